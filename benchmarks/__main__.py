"""python -m benchmarks [suite ...] — suites: core (no-LLM runtime throughput and memory),
durability (fsync and checkpoint overhead), protocol (orchestrator serialisation cost), client (LLMClient overhead per call).

Every suite measures its baseline in the same run and prints ratios against it; results go
to benchmarks/results/<suite>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def _run(workflow: str, overrides: list[str]) -> dict:
    import matrix_core

    from ._memory import PeakMemory

    with tempfile.TemporaryDirectory() as tmp:
        with PeakMemory() as mem:
            summary = matrix_core.run(workflow, [f"output.path={tmp}/out.jsonl", "run.progress=off", *overrides])
        lines = sum(1 for _ in open(f"{tmp}/out.jsonl"))
    assert lines == summary.done + summary.failed, "output must hold every task once"
    return {
        "tasks": summary.done + summary.failed,
        "failed": summary.failed,
        "wall_s": round(summary.wall_s, 3),
        "startup_s": round(summary.startup_s, 3),
        "tasks_per_s": round(summary.tasks_per_s, 1),
        "hops_per_s": round(summary.hops_per_s, 1),
        "peak_cluster_pss_mb": round(mem.peak / 2**20, 1),
        "idle_cluster_pss_mb": round(mem.baseline / 2**20, 1),
    }


CORE_MODES = {
    "p2p (default: co-located roles, coalesced forwarding)": [],
    "p2p, one actor per role replica, coalesced": ["run.colocate=false"],
    "naive: one actor per role, one Ray call per hop": ["run.colocate=false", "run.batch_max=1", "run.outstanding_per_peer=1000000"],
}


def suite_core(sizes: list[int]) -> dict:
    """No-LLM 3-role relay: tasks/s, hops/s and peak cluster memory at each size."""
    rows = []
    for size in sizes:
        base = None
        for mode, extra in CORE_MODES.items():
            if mode.startswith("naive") and size > 2000:
                extra = [*extra, "dataset.size=2000"]  # ~500 hops/s: 10k tasks would take a minute for the same ratio
            result = _run("relay", [f"dataset.size={size}", "run.max_concurrent_tasks=1024", "run.hosts=2", *extra])
            base = base or result
            result.update(mode=mode, size=size, vs_default=round(result["tasks_per_s"] / base["tasks_per_s"], 3))
            rows.append(result)
            print(f"{size:>6} tasks | {mode:<55} | {result['tasks_per_s']:>8.0f} tasks/s | {result['hops_per_s']:>8.0f} hops/s "
                  f"| x{result['vs_default']:<6} | peak {result['peak_cluster_pss_mb']:.0f} MB (idle {result['idle_cluster_pss_mb']:.0f})",
                  flush=True)
    return {"rows": rows}


DURABILITY_MODES = {
    "durability off (flush only, no checkpoints)": ["sink.fsync=none"],
    "fsync every batch (default)": [],
    "fsync + checkpoint every 5 steps": ["run.checkpoint_every=5"],
    "fsync + checkpoint every step": ["run.checkpoint_every=1"],
}


def suite_durability(sizes: list[int]) -> dict:
    """Cost of the durability settings on a 3-role relay with 3 laps (9 steps per task)."""
    rows = []
    for size in sizes:
        base = None
        for mode, extra in DURABILITY_MODES.items():
            result = _run("relay", [f"dataset.size={size}", "laps=3", "run.max_concurrent_tasks=1024", "run.hosts=2", *extra])
            base = base or result
            result.update(mode=mode, size=size, vs_off=round(result["tasks_per_s"] / base["tasks_per_s"], 3))
            rows.append(result)
            print(f"{size:>6} tasks | {mode:<45} | {result['tasks_per_s']:>8.0f} tasks/s | {result['hops_per_s']:>8.0f} hops/s | x{result['vs_off']}", flush=True)
    return {"rows": rows}


def suite_client(sizes: list[int]) -> dict:
    """LLMClient per-call cost against a bare httpx POST to the same server, same concurrency.

    The server is simllm replying one token almost instantly, so what is left is client work.
    """
    import asyncio

    import httpx
    import ray
    from matrix_plugin_simllm import settings
    from matrix_plugin_simllm.server import SimLLMReplica

    from matrix_core import Endpoint, LLMClient

    s = settings({"time_scale": 1000, "output_tokens": {"dist": "fixed", "mean": 1}, "max_num_seqs": 1024})
    server = ray.remote(SimLLMReplica).options(num_cpus=0).remote(s, 0)
    port = ray.get(server.start.remote("127.0.0.1", 0))["port"]
    url = f"http://127.0.0.1:{port}/v1"
    body = {"model": "simllm", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    rows = []

    async def measure(concurrency: int, calls: int) -> tuple[float, float]:
        client = LLMClient([Endpoint(url, "simllm")], max_concurrency_per_endpoint=concurrency)
        raw = httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency))
        sem = asyncio.Semaphore(concurrency)

        async def direct():
            async with sem:
                r = await raw.post(url + "/chat/completions", json=body)
                r.json()

        async def via_client():
            await client.chat(body["messages"], max_tokens=1)

        out = []
        for fn in (direct, via_client, direct, via_client):  # interleaved: drift hits both
            started = time.perf_counter()
            await asyncio.gather(*(fn() for _ in range(calls)))
            out.append((time.perf_counter() - started) / calls)
        await client.aclose()
        await raw.aclose()
        return min(out[0], out[2]), min(out[1], out[3])

    for concurrency in (1, 8, 32):
        direct_s, client_s = asyncio.run(measure(concurrency, 400 if concurrency == 1 else 2000))
        row = {"concurrency": concurrency, "direct_us_per_call": round(direct_s * 1e6), "client_us_per_call": round(client_s * 1e6),
               "overhead_us": round((client_s - direct_s) * 1e6), "ratio": round(client_s / direct_s, 3)}
        rows.append(row)
        print(f"concurrency {concurrency:>3} | direct httpx {row['direct_us_per_call']:>6} us/call | LLMClient {row['client_us_per_call']:>6} us/call "
              f"| overhead {row['overhead_us']:>5} us (x{row['ratio']})", flush=True)
    ray.kill(server)
    return {"rows": rows}


def suite_protocol(sizes: list[int]) -> dict:
    """Orchestrator pickle round trip (what a Ray call costs to serialise) vs a plain dict."""
    import pickle
    import timeit

    from matrix_core import Turn
    from matrix_plugin_dialogue import DialogueOrchestrator

    rows = []
    for turns in (0, 4, 32):
        orch = DialogueOrchestrator.from_row({"topic": "tides"}, row_key="r", trial=0, config={"rounds": 2})
        for i in range(turns):
            orch.add_turn(Turn(role="assistant", agent="answerer", content="word " * 60, usage={"prompt_tokens": 50, "completion_tokens": 60}))
        plain = orch.model_dump()
        n = 2000
        t_orch = timeit.timeit(lambda: pickle.loads(pickle.dumps(orch, protocol=5)), number=n) / n
        t_dict = timeit.timeit(lambda: pickle.loads(pickle.dumps(plain, protocol=5)), number=n) / n
        row = {"turns": turns, "bytes": len(pickle.dumps(orch, protocol=5)), "orchestrator_us": round(t_orch * 1e6, 1),
               "plain_dict_us": round(t_dict * 1e6, 1), "ratio_vs_dict": round(t_orch / t_dict, 2)}
        rows.append(row)
        print(f"{turns:>3} turns | {row['bytes']:>7} B | orchestrator {row['orchestrator_us']:>7} us | dict {row['plain_dict_us']:>7} us | x{row['ratio_vs_dict']}", flush=True)
    return {"rows": rows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("suites", nargs="*", default=["core"])
    parser.add_argument("--sizes", default="1000,10000")
    args = parser.parse_args(argv)
    import ray

    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR", _node_ip_address="127.0.0.1")
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "ray": ray.__version__, "platform": platform.platform()}
    RESULTS.mkdir(exist_ok=True)
    _run("relay", ["dataset.size=2000", "run.hosts=2"])  # warm-up: worker processes, imports, file cache
    for suite in args.suites:
        fn = globals().get(f"suite_{suite}")
        if fn is None:
            sys.exit(f"unknown suite {suite!r}; available: core, durability, protocol, client")
        started = time.time()
        result = fn([int(s) for s in args.sizes.split(",")])
        result.update(machine=machine, command="python -m benchmarks " + " ".join(sys.argv[1:]), date=time.strftime("%Y-%m-%d"))
        (RESULTS / f"{suite}.json").write_text(json.dumps(result, indent=2))
        print(f"{suite}: {time.time() - started:.0f}s, results in {RESULTS / (suite + '.json')}")


if __name__ == "__main__":
    main()
