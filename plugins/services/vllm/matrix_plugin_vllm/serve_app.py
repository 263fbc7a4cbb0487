"""vLLM as a Ray Serve application through ``ray.serve.llm`` (``LLMConfig`` + ``build_openai_app``).

:func:`llm_config` turns the ``llm`` section (``llm/vllm.yaml``) and its ``llm.deployment``
options (:class:`~matrix_core.DeploymentOptions`) into the keyword arguments of
``ray.serve.llm.LLMConfig``: a plain dict, checked by Ray Serve LLM's own config model, so it
is built and validated where vLLM is not installed. :func:`serve_app` (the backend's
``LLMBackendSpec.serve_app``) makes the Serve application from it; ``ray.serve.llm`` imports
vLLM's protocol classes at import time, so that step needs ``ray[llm]`` where it runs.
"""
from __future__ import annotations

from typing import Any, Mapping

from matrix_core import ConfigError, DeploymentOptions
from matrix_core._private.serve_llm import build_openai_app, deployment_config, flags_to_kwargs, positive_int, settings, validate

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


def placement(s: Mapping[str, Any]) -> dict[str, Any]:
    """One bundle per engine worker, one GPU each (Ray Serve LLM repeats it tp x pp times and
    adds the replica actor's CPUs to the first: a replica reserves what ``replica_demand()``
    says). ``PACK`` keeps a replica on one node when it
    fits; ``SPREAD``/``STRICT_SPREAD`` puts pipeline stages on separate nodes."""
    strategy = str(s.get("placement_strategy") or "PACK").upper()
    if strategy not in PLACEMENT_STRATEGIES:
        raise ConfigError(f"llm.placement_strategy must be one of {', '.join(PLACEMENT_STRATEGIES)}, got {strategy!r}")
    return {"bundle_per_worker": {"GPU": 1.0}, "strategy": strategy}


def llm_config(cfg: Mapping[str, Any], options: DeploymentOptions | None = None, *, defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The keyword arguments of ``ray.serve.llm.LLMConfig`` for ``cfg`` (the ``llm`` section)."""
    if defaults is None:
        from . import defaults as plugin_defaults

        defaults = plugin_defaults()
    s = settings(defaults, cfg)
    if not s.get("model"):
        raise ConfigError("llm.model is not set: name the model vLLM should serve (a Hugging Face id or a path on the GPU nodes)")
    kwargs = engine_kwargs(s)
    workers = kwargs["tensor_parallel_size"] * kwargs["pipeline_parallel_size"]
    if options is None:
        options = DeploymentOptions(num_gpus=workers)
    config: dict[str, Any] = {
        "model_loading_config": {"model_id": str(s.get("served_model_name") or s["model"]), "model_source": str(s["model"])},
        "engine_kwargs": kwargs,
        "deployment_config": deployment_config(options, engine="vllm", gpus_per_replica=workers),
        "placement_group_config": placement(s),
    }
    if s.get("accelerator_type"):
        config["accelerator_type"] = str(s["accelerator_type"])
    lora = s.get("lora") or {}
    if lora:
        if not lora.get("path"):
            raise ConfigError("llm.lora.path is not set: the s3://, gs:// or abfss:// folder that holds one subfolder per adapter")
        if not str(lora["path"]).startswith(LORA_SCHEMES):
            raise ConfigError(f"llm.lora.path must start with {', '.join(LORA_SCHEMES)} (Ray Serve LLM loads adapters from cloud storage), got {lora['path']!r}")
        config["lora_config"] = {"dynamic_lora_loading_path": str(lora["path"]), "max_num_adapters_per_replica": kwargs["max_loras"]}
    if s.get("env"):
        config["runtime_env"] = {"env_vars": {str(k): str(v) for k, v in s["env"].items()}}
    validate(config, "vllm")
    return config


def serve_app(cfg: Mapping[str, Any], options: DeploymentOptions):
    """``LLMBackendSpec.serve_app``: Serve's OpenAI-compatible ingress + the vLLM replicas."""
    return build_openai_app(llm_config(cfg, options), "vllm", "vLLM where the application is built (`pip install \"ray[serve,llm]\"`)")
