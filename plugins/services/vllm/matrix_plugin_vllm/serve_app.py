"""vLLM as a Ray Serve application through ``ray.serve.llm`` (``LLMConfig`` + ``build_openai_app``).

:func:`llm_config` turns the ``llm`` section (``llm/vllm.yaml``) and the deployment's
options (replicas, autoscaling) into the keyword arguments of ``ray.serve.llm.LLMConfig``: a
plain dict, so it can be built, checked and printed where vLLM is not installed.
:func:`build_app` makes the Serve application from it; ``ray.serve.llm`` refuses to import
without vLLM (or SGLang), so that step runs only where the engine is installed.
"""
from __future__ import annotations

from typing import Any, Mapping

from matrix_core import ConfigError
from matrix_core._private.serve_llm import autoscaling, flags_to_kwargs, one_line, option, positive_int, validate

# Our keys that are vLLM engine arguments of the same name (`vllm serve --max-model-len` etc.).
ENGINE_KEYS = ("max_model_len", "max_num_seqs", "gpu_memory_utilization")
LORA_SCHEMES = ("s3://", "gs://", "abfss://", "azure://")
PLACEMENT_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


def engine_kwargs(s: Mapping[str, Any]) -> dict[str, Any]:
    """vLLM engine arguments: parallelism, the named keys, tool calling, LoRA, then ``extra_args``
    and ``engine_kwargs`` (verbatim, last, so they win)."""
    kwargs: dict[str, Any] = {
        "tensor_parallel_size": positive_int(s, "tensor_parallel_size"),
        "pipeline_parallel_size": positive_int(s, "pipeline_parallel_size"),
    }
    for key in ENGINE_KEYS:
        if s.get(key) is not None:
            kwargs[key] = s[key]
    if s.get("tool_call_parser"):
        kwargs |= {"enable_auto_tool_choice": True, "tool_call_parser": s["tool_call_parser"]}
    lora = s.get("lora") or {}
    if lora:
        kwargs["enable_lora"] = True
        kwargs["max_loras"] = int(lora.get("max_adapters_per_replica") or 16)
        if lora.get("max_lora_rank") is not None:
            kwargs["max_lora_rank"] = int(lora["max_lora_rank"])
    kwargs |= flags_to_kwargs(list(s.get("extra_args") or []))
    kwargs |= dict(s.get("engine_kwargs") or {})
    return kwargs


def placement(s: Mapping[str, Any], workers: int) -> dict[str, Any]:
    """One placement bundle per engine worker (Ray Serve LLM repeats it tp*pp times): a GPU
    each (``num_gpus`` per replica spread over the workers), plus ``resources``. ``PACK``
    keeps a replica on one node when it fits; ``SPREAD``/``STRICT_SPREAD`` for pipeline stages
    on separate nodes."""
    strategy = str(s.get("placement_strategy") or "PACK").upper()
    if strategy not in PLACEMENT_STRATEGIES:
        raise ConfigError(f"llm.placement_strategy must be one of {', '.join(PLACEMENT_STRATEGIES)}, got {strategy!r}")
    gpus = s.get("num_gpus")
    bundle: dict[str, Any] = {"GPU": 1.0 if gpus is None else float(gpus) / workers, "CPU": 1.0}
    bundle |= {k: float(v) for k, v in (s.get("resources") or {}).items()}
    return {"bundle_per_worker": bundle, "strategy": strategy}


def llm_config(cfg: Mapping[str, Any], options: Any = None, *, defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The keyword arguments of ``ray.serve.llm.LLMConfig`` for ``cfg`` (the ``llm`` section)."""
    if defaults is None:
        from . import defaults as plugin_defaults

        defaults = plugin_defaults()
    s = {**defaults, **{k: v for k, v in cfg.items() if k != "client"}}
    if not s.get("model"):
        raise ConfigError("llm.model is not set: name the model vLLM should serve (a Hugging Face id or a path on the GPU nodes)")
    model_id = str(s.get("served_model_name") or s["model"])
    kwargs = engine_kwargs(s)
    workers = kwargs["tensor_parallel_size"] * kwargs["pipeline_parallel_size"]
    # Ray Serve LLM places the engine workers itself; it takes the sizes from these two keys.
    deployment: dict[str, Any] = {
        "autoscaling_config": autoscaling(options, default_replicas=positive_int(s, "replicas")),
        "ray_actor_options": {"num_cpus": float(s.get("num_cpus") if s.get("num_cpus") is not None else 1)},
    }
    if option(options, "max_ongoing_requests") is not None:
        deployment["max_ongoing_requests"] = int(option(options, "max_ongoing_requests"))
    if option(options, "name"):
        deployment["name"] = str(option(options, "name"))
    config: dict[str, Any] = {
        "model_loading_config": {"model_id": model_id, "model_source": str(s["model"])},
        "engine_kwargs": kwargs,
        "deployment_config": deployment,
        "placement_group_config": placement(s, workers),
    }
    if s.get("accelerator_type"):
        config["accelerator_type"] = str(s["accelerator_type"])
    lora = s.get("lora") or {}
    if lora:
        if not lora.get("path"):
            raise ConfigError("llm.lora.path is not set: the s3://, gs:// or abfss:// folder that holds one subfolder per adapter")
        if not str(lora["path"]).startswith(LORA_SCHEMES):
            raise ConfigError(f"llm.lora.path must start with {', '.join(LORA_SCHEMES)} (Ray Serve LLM loads adapters from cloud storage), got {lora['path']!r}")
        config["lora_config"] = {
            "dynamic_lora_loading_path": str(lora["path"]),
            "max_num_adapters_per_replica": kwargs["max_loras"],
        }
    if s.get("env"):
        config["runtime_env"] = {"env_vars": {str(k): str(v) for k, v in s["env"].items()}}
    validate(config, "vllm")
    return config


def serving_args(config: Mapping[str, Any], options: Any = None) -> dict[str, Any]:
    """``build_openai_app``'s argument: one model behind Serve's OpenAI-compatible ingress."""
    args: dict[str, Any] = {"llm_configs": [dict(config)]}
    ingress = option(options, "ingress_replicas")
    if ingress:
        args["ingress_deployment_config"] = {"num_replicas": int(ingress)}
    return args


def build_app(cfg: Mapping[str, Any], options: Any = None):
    """The Serve application (OpenAI ingress + vLLM replicas) for ``cfg``; needs vLLM here."""
    config = llm_config(cfg, options)
    try:
        from ray.serve.llm import LLMConfig, build_openai_app
    except ImportError as exc:
        raise ConfigError(f"llm=vllm as a Serve deployment needs `pip install \"ray[serve,llm]\"` (vLLM) where the application is built: {exc}") from None
    try:
        return build_openai_app(serving_args(config, options) | {"llm_configs": [LLMConfig(**config)]})
    except ValueError as exc:
        raise ConfigError(f"llm (vllm): {one_line(exc)}") from None
