"""Helpers shared by the engine plugins that build ``ray.serve.llm`` applications (vllm, sglang):
deployment options to Serve's autoscaling config, engine CLI flags to engine kwargs."""
from __future__ import annotations

import json
from typing import Any, Mapping

from ..errors import ConfigError

# Ray Serve LLM's own default is 16; Matrix keeps many more requests in flight per replica
# (hundreds of agents per engine), so a replica is "busy" later.
DEFAULT_TARGET_ONGOING_REQUESTS = 64


def option(options: Any, key: str, default: Any = None) -> Any:
    """A deployment option from a mapping or an options object (attribute), or ``default``."""
    value = options.get(key) if isinstance(options, Mapping) else getattr(options, key, None)
    return default if value is None else value


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


def autoscaling(options: Any, *, default_replicas: int = 1) -> dict[str, Any]:
    """Serve's ``autoscaling_config`` from the deployment options (min/max/target)."""
    lo = int(option(options, "min_replicas", default_replicas))
    hi = int(option(options, "max_replicas", lo))
    if lo < 0 or hi < max(lo, 1):
        raise ConfigError(f"replicas: need 0 <= min_replicas <= max_replicas and max_replicas >= 1, got min={lo} max={hi}")
    target = float(option(options, "target_ongoing_requests", DEFAULT_TARGET_ONGOING_REQUESTS))
    if target <= 0:
        raise ConfigError(f"target_ongoing_requests must be above 0, got {target}")
    config = {"min_replicas": lo, "max_replicas": hi, "target_ongoing_requests": target}
    initial = option(options, "initial_replicas")
    if initial is not None:
        config["initial_replicas"] = int(initial)
    return config


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
