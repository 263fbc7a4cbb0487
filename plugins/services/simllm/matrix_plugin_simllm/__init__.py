"""Simulated OpenAI-compatible LLM servers (``llm=simllm``) for capacity planning,
benchmarks and fault tests: real HTTP on 127.0.0.1, no model. See ``engine`` for the
capacity model and ``conf/llm/simllm.yaml`` for the settings.

Each replica is a Ray actor (``num_cpus=0``) serving one port. With ``detached: true``
(set by ``matrix services start``) the actors are detached and named in namespace
``matrix-services`` so they outlive the driver; the handle's ``info`` then lists them
(``detached``, ``namespace``, ``actors``) for whoever stops them later.
"""
from __future__ import annotations

import copy
import logging
import time
import uuid
from pathlib import Path
from typing import Any, Mapping

from matrix_core import ConfigDirSpec, ConfigError, Endpoint, LLMBackendSpec, MatrixError, ServiceHandle, hookimpl
from matrix_core.specs import backend_defaults

log = logging.getLogger("matrix.simllm")

CONF_DIR = Path(__file__).parent / "conf"
NAMESPACE = "matrix"
SERVICES_NAMESPACE = "matrix-services"
# Keys the caller may add beyond the yaml: `service_name` names a detached service's actors.
EXTRA_KEYS = {"client", "service_name"}
DISTRIBUTIONS = ("fixed", "uniform", "lognormal")
WILDCARD_HOSTS = ("0.0.0.0", "::")


def defaults() -> dict[str, Any]:
    return backend_defaults(CONF_DIR, "simllm")


def settings(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults merged with ``cfg`` (one level deep for the nested sections), validated."""
    s = defaults()
    for key, value in cfg.items():
        if key in EXTRA_KEYS:
            continue
        if key not in s:
            raise ConfigError(f"llm.{key} is not a simllm setting; known: {', '.join(sorted(s))}")
        if isinstance(s[key], dict):
            unknown = set(value or {}) - set(s[key])
            if unknown:
                raise ConfigError(f"llm.{key}.{sorted(unknown)[0]} is not a simllm setting; known: {', '.join(sorted(s[key]))}")
            s[key] = {**s[key], **(value or {})}
        else:
            s[key] = value
    try:
        _validate(s)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"llm (simllm): {exc}") from None
    return s


def _validate(s: dict[str, Any]) -> None:
    for key in ("replicas", "port", "max_num_seqs", "seed", "reasoning_tokens"):
        s[key] = int(s[key])
    for key in ("prefill_tps", "decode_tps_single", "decode_alpha", "time_scale", "tick_ms", "startup_timeout_s"):
        s[key] = float(s[key])
    s["detached"] = bool(s["detached"])
    s["model"], s["host"] = str(s["model"]), str(s["host"])
    if s["reasoning_tokens"] < 0:
        raise ValueError("reasoning_tokens must be >= 0")
    if s["replicas"] < 1 or s["max_num_seqs"] < 1:
        raise ValueError("replicas and max_num_seqs must be at least 1")
    if s["port"] < 0 or s["port"] + s["replicas"] - 1 > 65535:
        raise ValueError(f"port {s['port']} (+{s['replicas']} replicas) is outside 0..65535")
    if min(s["prefill_tps"], s["decode_tps_single"], s["time_scale"], s["tick_ms"]) <= 0 or s["decode_alpha"] < 0:
        raise ValueError("prefill_tps, decode_tps_single, time_scale and tick_ms must be > 0, decode_alpha >= 0")
    out = s["output_tokens"]
    if out["dist"] not in DISTRIBUTIONS:
        raise ValueError(f"output_tokens.dist must be one of {', '.join(DISTRIBUTIONS)}, got {out['dist']!r}")
    out["min"], out["max"], out["mean"], out["sigma"] = int(out["min"]), int(out["max"]), float(out["mean"]), float(out["sigma"])
    if not 1 <= out["min"] <= out["max"] or out["mean"] < 1 or out["sigma"] < 0:
        raise ValueError("output_tokens needs 1 <= min <= max, mean >= 1 and sigma >= 0")
    faults = s["faults"]
    rates = [float(faults[f"rate_{k}"] or 0) for k in ("429", "500", "timeout", "crash")]
    if any(not 0 <= r <= 1 for r in rates) or sum(rates) > 1 + 1e-9:
        raise ValueError(f"faults: each rate must be in [0, 1] and together at most 1, got {rates}")
    if faults["crash_after"] is not None and int(faults["crash_after"]) < 0:
        raise ValueError("faults.crash_after must be >= 0 or null")
    if float(faults["retry_after_s"]) < 0:
        raise ValueError("faults.retry_after_s must be >= 0")


def _cause(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines or [type(exc).__name__])[-1]


def _wait_closed(urls: list[str], timeout: float = 10.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    for url in urls:
        while time.monotonic() < deadline:
            try:
                httpx.get(url[: -len("/v1")] + "/health", timeout=1.0)
            except httpx.ConnectError:
                break
            except httpx.HTTPError:  # reset or timed out: the process is going down
                pass
            time.sleep(0.1)


def start_simllm(cfg: Mapping[str, Any]) -> ServiceHandle:
    s = settings(cfg)
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from .server import SimLLMReplica

    namespace = SERVICES_NAMESPACE if s["detached"] else NAMESPACE
    prefix = f"simllm-{cfg.get('service_name') or uuid.uuid4().hex[:8]}"
    options: dict[str, Any] = {"num_cpus": 0, "max_restarts": 0, "namespace": namespace}
    if s["detached"]:
        options["lifetime"] = "detached"
    if s["host"] not in WILDCARD_HOSTS:
        # A loopback (or this host's) address is only reachable from this node.
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    names = [f"{prefix}-{i}" for i in range(s["replicas"])]
    replica = ray.remote(SimLLMReplica)
    actors: list = []
    urls: list[str] = []

    def stop() -> None:
        for actor in actors:
            try:
                ray.kill(actor)
            except Exception:  # already dead (a crash fault) or Ray is gone
                pass
        _wait_closed(urls)  # so a start on the same ports right after does not find them half-closed

    try:
        for i, name in enumerate(names):
            actors.append(replica.options(name=name, **options).remote(copy.deepcopy(s), i))
        ports = [s["port"] + i if s["port"] else 0 for i in range(s["replicas"])]
        infos = ray.get([a.start.remote(s["host"], p) for a, p in zip(actors, ports)], timeout=s["startup_timeout_s"])
    except ValueError as exc:  # an actor name is taken
        stop()
        raise MatrixError(f"cannot start simllm replicas: {exc}") from None
    except ray.exceptions.GetTimeoutError:
        stop()
        raise MatrixError(f"simllm replicas did not start within {s['startup_timeout_s']:g}s (llm.startup_timeout_s)") from None
    except ray.exceptions.RayError as exc:
        stop()
        raise MatrixError(f"a simllm replica failed to start: {_cause(exc)}") from None
    failed = [info["error"] for info in infos if "error" in info]
    if failed:
        stop()
        raise MatrixError(f"simllm: {failed[0]}; set llm.port to free ports, or 0")
    # A wildcard bind is advertised by the node's address, so other nodes can reach it.
    urls += [f"http://{info['ip'] if s['host'] in WILDCARD_HOSTS else s['host']}:{info['port']}/v1" for info in infos]
    log.info("simllm: %d simulated replica(s) at %s (time_scale %g)", len(urls), ", ".join(urls), s["time_scale"])
    return ServiceHandle(
        endpoints=[Endpoint(base_url=u, model=s["model"]) for u in urls],
        stop=stop,
        info={"simulated": True, "detached": s["detached"], "namespace": namespace, "actors": names, "base_urls": urls},
    )


@hookimpl
def register_llm_backends(register):
    register(LLMBackendSpec("simllm", start_simllm, "simulated OpenAI-compatible servers: capacity model, fault injection"))


@hookimpl
def register_config_dirs(register):
    register(ConfigDirSpec("simllm", CONF_DIR, "llm/simllm"))
