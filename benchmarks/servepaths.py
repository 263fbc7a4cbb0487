"""servepaths: the cost of one LLM call on each path from an agent host to a Serve replica.

One simllm Serve deployment (one replica of ``matrix_plugin_simllm``'s ``SimLLMDeployment``,
deployed by the core's ``serving.deploy``) is reached from an agent-host actor's ``LLMClient``
(``benchmarks/_serve_paths.py``) three ways, all answered by the same engine in the same replica:

- ``direct``: HTTP to the replica's own server (the baseline; Serve not on the path);
- ``proxy``: HTTP through Serve's HTTP proxy (``/NAME/v1``), which routes to the replica;
- ``handle``: no socket: ``serve://NAME`` through ``matrix_core._private.serve_transport``,
  a ``DeploymentHandle`` call from the agent host.

Two regimes, each path measured ``repeats`` times in a shuffled order per repeat:

- ``llm-bound``: the replica has 16 slots and fixed 64-token replies (~37 calls/s), the
  client keeps 32 calls in flight: throughput at saturation of the LLM (the 95% criterion);
- ``cpu-bound``: the replica has unlimited slots and near-zero latency, so throughput is
  what the data path's CPU allows; CPU per call counts every process of the local Ray
  (client, proxy, replica, Serve controller).
"""
from __future__ import annotations

import os
import random
from typing import Any

from ._common import cluster_cpu_s, fmt, spread

PATHS = ("direct", "proxy", "handle")
REGIMES = {
    # 16 slots x 64 tokens at 100 tok/s, 1.5x faster than real: ~0.43 s a call, ~37 calls/s,
    # well under what any path's CPU allows here, so the LLM is the bottleneck.
    "llm-bound": {"settings": {"max_num_seqs": 16, "decode_tps_single": 100, "decode_alpha": 0.0, "prefill_tps": 1e9,
                               "time_scale": 1.5, "output_tokens": {"dist": "fixed", "mean": 64}},
                  "concurrency": 32, "max_tokens": 64},
    "cpu-bound": {"settings": {"max_num_seqs": 100000, "decode_tps_single": 1e6, "decode_alpha": 0.0, "prefill_tps": 1e12,
                               "time_scale": 1.0, "tick_ms": 1, "output_tokens": {"dist": "fixed", "mean": 4}},
                  "concurrency": 64, "max_tokens": 4},
}


def _deploy(settings: dict[str, Any]):
    """The simllm deployment, its engine's own URL (the direct path) and Serve's proxy URL."""
    from matrix_plugin_simllm import start_simllm
    from ray import serve

    service = start_simllm({**settings, "replicas": 1})
    app = service.info["serve_app"]
    engine_url = serve.get_app_handle(app).engine_url.remote().result(timeout_s=120)
    return service, app, engine_url


def _hosts(app: str, engine_url: str, proxy_url: str, concurrency: int) -> dict[str, Any]:
    from matrix_core._private.serve_transport import TRANSPORT, endpoint_url

    from ._serve_paths import AgentHost

    specs = {"direct": (engine_url, None), "proxy": (proxy_url, None), "handle": (endpoint_url(app), TRANSPORT)}
    return {path: AgentHost.remote(url, transport, concurrency) for path, (url, transport) in specs.items()}


def suite_servepaths(quick: bool, repeats: int) -> dict[str, Any]:
    import ray

    calls = {"llm-bound": 100 if quick else 400, "cpu-bound": 200 if quick else 1000}
    rows, raw, load = [], {}, {"start": [round(x, 2) for x in os.getloadavg()]}
    for regime, spec in REGIMES.items():
        service, hosts = None, {}
        try:
            service, app, engine_url = _deploy(spec["settings"])
            hosts = _hosts(app, engine_url, service.endpoints[0].base_url, spec["concurrency"])
            for host in hosts.values():  # warm-up: connections, the handle's replica list, imports
                ray.get(host.fire.remote(min(100, calls[regime]), spec["max_tokens"]))
            runs: dict[str, list[dict]] = {p: [] for p in PATHS}
            for _ in range(repeats):
                order = random.sample(PATHS, len(PATHS))
                for path in order:
                    cpu0 = cluster_cpu_s()
                    r = ray.get(hosts[path].fire.remote(calls[regime], spec["max_tokens"]))
                    r["cluster_cpu_s"] = cluster_cpu_s() - cpu0
                    r["calls_per_s"] = r["calls"] / r["elapsed_s"]
                    r["cpu_ms_per_call"] = 1000 * r["cluster_cpu_s"] / r["calls"]
                    r["client_cpu_ms_per_call"] = 1000 * r["client_cpu_s"] / r["calls"]
                    assert r["tokens"] == r["calls"] * spec["max_tokens"], r
                    runs[path].append(r)
                    print(f"{regime:<9} | {path:<6} | {r['calls_per_s']:8.1f} calls/s | {r['cpu_ms_per_call']:6.2f} ms CPU/call "
                          f"(client {r['client_cpu_ms_per_call']:.2f}) | load {os.getloadavg()[0]:.1f}", flush=True)
            # Each repeat's ratio against the direct run of the same repeat, then the median.
            for path in PATHS:
                ratios = [r["calls_per_s"] / d["calls_per_s"] for r, d in zip(runs[path], runs["direct"])]
                cpu_ratios = [r["cpu_ms_per_call"] / d["cpu_ms_per_call"] for r, d in zip(runs[path], runs["direct"])]
                rows.append({"regime": regime, "path": path, "concurrency": spec["concurrency"], "calls": calls[regime],
                             **{m: spread(r[m] for r in runs[path]) for m in ("calls_per_s", "cpu_ms_per_call", "client_cpu_ms_per_call")},
                             "throughput_vs_direct": spread(ratios), "cpu_vs_direct": spread(cpu_ratios)})
            raw[regime] = runs
        finally:
            for host in hosts.values():
                ray.kill(host)
            if service is not None:
                service.stop()
    load["end"] = [round(x, 2) for x in os.getloadavg()]
    return {"rows": rows, "repeats": repeats, "load_avg": load, "raw": raw, "regimes": {k: {**v} for k, v in REGIMES.items()}}


COLUMNS = [
    ("regime", "regime", lambda r: r["regime"]),
    ("path", "path", lambda r: r["path"]),
    ("cps", "calls/s", lambda r: fmt(r["calls_per_s"])),
    ("vs", "throughput ÷ direct", lambda r: fmt(r["throughput_vs_direct"], 2)),
    ("cpu", "CPU ms/call (all processes)", lambda r: fmt(r["cpu_ms_per_call"], 2)),
    ("cvs", "CPU ÷ direct", lambda r: fmt(r["cpu_vs_direct"], 2)),
    ("client", "agent-host CPU ms/call", lambda r: fmt(r["client_cpu_ms_per_call"], 2)),
]
