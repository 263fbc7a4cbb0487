"""Simulated OpenAI-compatible LLM servers (``llm=simllm``) for capacity planning,
benchmarks and fault tests: real HTTP on 127.0.0.1, no model. See ``engine`` for the
capacity model and ``conf/llm/simllm.yaml`` for the settings.

A Ray Serve deployment (``llm=simllm`` in a run, or ``matrix services start NAME
llm=simllm``): each replica runs one simulated engine in-process and answers Serve's proxy;
``engine_url()`` on a replica opens its own HTTP server (the direct path, for measurements).
"""
from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any, Mapping

from matrix_core import ConfigDirSpec, ConfigError, DeploymentOptions, LLMBackendSpec, ServiceHandle, hookimpl
from matrix_core.deployments import serve_options
from matrix_core.specs import backend_defaults

log = logging.getLogger("matrix.simllm")

CONF_DIR = Path(__file__).parent / "conf"
# Keys the caller may add beyond the yaml: `service_name` names a detached service's actors.
EXTRA_KEYS = {"client", "service_name", "deployment", "detached"}
DISTRIBUTIONS = ("fixed", "uniform", "lognormal")


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


def build_app(cfg: Mapping[str, Any], options: DeploymentOptions):
    """The Serve application: one :class:`~.server.SimLLMDeployment` (the contract:
    :mod:`matrix_core.deployments`); ``llm.replicas`` is its replica count unless
    ``llm.deployment`` sets min/max."""
    s = settings(cfg)
    from ray import serve

    from .server import SimLLMDeployment

    # Up to 4x the batch per replica: the engine's own queue is exercised, as on a real server.
    deployment = serve.deployment(SimLLMDeployment, name="simllm").options(
        **serve_options(options, max_ongoing_requests=4 * s["max_num_seqs"]))
    return deployment.bind(s)


def start_simllm(cfg: Mapping[str, Any]) -> ServiceHandle:
    """Deploy simulated servers for the caller (Ray initialised); ``stop()`` removes them."""
    from matrix_core._private.serving import deploy, deployment_options

    section = {**defaults(), **cfg}
    section["deployment"] = {**(defaults().get("deployment") or {}), **(cfg.get("deployment") or {})}
    handle = deploy(SPEC, section, deployment_options(section, f"simllm-{uuid.uuid4().hex[:8]}"), owned=True)
    handle.info["simulated"] = True
    return handle


SPEC = LLMBackendSpec("simllm", description="simulated OpenAI-compatible servers: capacity model, fault injection (a Ray Serve deployment)",
                      serve_app=build_app)


@hookimpl
def register_llm_backends(register):
    register(SPEC)


@hookimpl
def register_config_dirs(register):
    register(ConfigDirSpec("simllm", CONF_DIR, "llm/simllm"))
