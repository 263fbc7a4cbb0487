"""Helpers shared by the engine plugins that build ``ray.serve.llm`` applications (vllm, sglang):
deployment options to Serve's autoscaling config, engine CLI flags to engine kwargs."""
from __future__ import annotations

import json
from typing import Any, Mapping

from ..deployments import autoscaling_config
from ..errors import ConfigError
from ..options import DeploymentOptions


def flags_to_kwargs(args: list[Any]) -> dict[str, Any]:
    """``vllm serve`` flags (``extra_args``) as engine kwargs: ``--max-model-len 8192`` ->
    ``{"max_model_len": 8192}``; a flag without a value is ``True``; ``--no-x`` is ``x: False``."""
    kwargs: dict[str, Any] = {}
    items = [str(a) for a in args]
    i = 0
    while i < len(items):
        flag = items[i]
        if not flag.startswith("--"):
            raise ConfigError(f"llm.extra_args: expected a --flag at position {i}, got {flag!r}")
        name, _, inline = flag[2:].partition("=")
        key = name.replace("-", "_")
        if inline:
            kwargs[key] = _scalar(inline)
        elif i + 1 < len(items) and not items[i + 1].startswith("--"):
            kwargs[key] = _scalar(items[i + 1])
            i += 1
        elif key.startswith("no_"):
            kwargs[key[3:]] = False
        else:
            kwargs[key] = True
        i += 1
    return kwargs


def _scalar(text: str) -> Any:
    try:
        return json.loads(text)  # numbers, true/false, JSON objects (e.g. --speculative-config)
    except ValueError:
        return text


def positive_int(s: Mapping[str, Any], key: str, default: int = 1) -> int:
    value = s.get(key)
    if value is None:
        return default
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"llm.{key} must be a whole number, got {value!r}") from None
    if n < 1:
        raise ConfigError(f"llm.{key} must be at least 1, got {n}")
    return n


def deployment_config(options: DeploymentOptions, *, engine: str, gpus_per_replica: int) -> dict[str, Any]:
    """``LLMConfig.deployment_config`` from the ``llm.deployment`` options.

    Ray Serve LLM reserves the engine's GPUs itself (one placement bundle per engine worker),
    so they are not in ``ray_actor_options``; the options must still say how many one replica
    takes, because the core checks the cluster against ``options.replica_demand()``.
    """
    if options.num_gpus != gpus_per_replica:
        raise ConfigError(
            f"llm.deployment.num_gpus={options.num_gpus:g} but one {engine} replica runs tensor_parallel_size x "
            f"pipeline_parallel_size = {gpus_per_replica} engine workers, one GPU each: set llm.deployment.num_gpus={gpus_per_replica}"
        )
    actor: dict[str, Any] = {"num_cpus": options.num_cpus}
    if options.resources:
        actor["resources"] = {k: float(v) for k, v in options.resources.items()}
    config: dict[str, Any] = {
        "autoscaling_config": autoscaling_config(options),
        "ray_actor_options": actor,
        "health_check_period_s": options.health_check_period_s,
        "health_check_timeout_s": options.health_check_timeout_s,
    }
    if options.max_ongoing_requests:  # else Ray Serve LLM's own (the engine queues)
        config["max_ongoing_requests"] = options.max_ongoing_requests
    return config


def settings(defaults: Mapping[str, Any], cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The backend's yaml defaults overlaid with ``cfg``, without the client/deployment sections."""
    return {k: v for k, v in {**defaults, **cfg}.items() if k not in ("client", "deployment")}


def one_line(exc: Exception) -> str:
    """A pydantic ValidationError (or any error) as one line: ``loc: message; ...``."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            return "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}".lstrip(": ") for e in errors())
        except Exception:  # noqa: BLE001 - fall back to the text
            pass
    return " ".join(str(exc).split())


def validate(config: Mapping[str, Any], engine: str) -> None:
    """Check ``config`` with Ray Serve LLM's own ``LLMConfig`` model, which imports without an
    engine, so a bad value fails on the machine that deploys, before anything is scheduled.
    ``server_cls`` is left out: resolving it imports the engine."""
    try:
        from ray.llm._internal.serve.core.configs.llm_config import LLMConfig
    except ImportError:  # Ray without Serve here: build_app reports what to install
        return
    try:
        LLMConfig(**{k: v for k, v in config.items() if k != "server_cls"})
    except ValueError as exc:
        raise ConfigError(f"llm ({engine}): {one_line(exc)}") from None


def build_openai_app(config: Mapping[str, Any], engine: str, install: str):
    """Serve's OpenAI-compatible ingress over one ``LLMConfig``; ``install`` is what to pip
    install where the application is built (``ray.serve.llm`` imports the engine)."""
    try:
        from ray.serve.llm import LLMConfig, build_openai_app as build
    except ImportError as exc:
        raise ConfigError(f"llm={engine} as a Serve deployment needs {install}: {one_line(exc)}") from None
    try:
        return build({"llm_configs": [LLMConfig(**config)]})
    except ValueError as exc:
        raise ConfigError(f"llm ({engine}): {one_line(exc)}") from None
