"""SGLang as a Ray Serve application through ``ray.serve.llm``.

Ray 2.60 runs SGLang in ``ray.serve.llm`` through ``LLMConfig.server_cls`` = ``SGLangServer``
(SGLang's in-process engine behind the same OpenAI-compatible ingress as vLLM; Ray marks it
"early development"). The engine arguments are SGLang's ``ServerArgs`` names
(``model_path``, ``tp_size``, ...). :func:`llm_config` is a plain dict, checked by Ray Serve
LLM's own config model where SGLang is not installed; :func:`serve_app` needs SGLang (or vLLM)
where it runs, because ``ray.serve.llm`` imports an engine's protocol classes.
"""
from __future__ import annotations

from typing import Any, Mapping

from matrix_core import ConfigError, DeploymentOptions
from matrix_core._private.serve_llm import build_openai_app, deployment_config, flags_to_kwargs, positive_int, settings, validate

SERVER_CLS = "ray.llm._internal.serve.engines.sglang.sglang_engine:SGLangServer"
# Our key -> SGLang ServerArgs name.
ENGINE_KEYS = {"max_running_requests": "max_running_requests", "mem_fraction_static": "mem_fraction_static", "max_model_len": "context_length", "tool_call_parser": "tool_call_parser"}
# SGLang's scheduler actors pick their GPUs themselves; Ray must not narrow CUDA_VISIBLE_DEVICES
# for them (Ray's SGLang guide asks for this variable).
RUNTIME_ENV_VARS = {"RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES": "0"}


def engine_kwargs(s: Mapping[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "model_path": str(s["model"]),
        "tp_size": positive_int(s, "tensor_parallel_size"),
        "pp_size": positive_int(s, "pipeline_parallel_size"),
    }
    if s.get("served_model_name"):
        kwargs["served_model_name"] = str(s["served_model_name"])
    for key, name in ENGINE_KEYS.items():
        if s.get(key) is not None:
            kwargs[name] = s[key]
    kwargs |= flags_to_kwargs(list(s.get("extra_args") or []))
    kwargs |= dict(s.get("engine_kwargs") or {})
    return kwargs


def llm_config(cfg: Mapping[str, Any], options: DeploymentOptions | None = None, *, defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The keyword arguments of ``ray.serve.llm.LLMConfig`` for ``cfg`` (the ``llm`` section)."""
    if defaults is None:
        from . import defaults as plugin_defaults

        defaults = plugin_defaults()
    s = settings(defaults, cfg)
    if not s.get("model"):
        raise ConfigError("llm.model is not set: name the model SGLang should serve (a Hugging Face id or a path on the GPU nodes)")
    kwargs = engine_kwargs(s)
    workers = kwargs["tp_size"] * kwargs["pp_size"]
    if options is None:
        options = DeploymentOptions(num_gpus=workers)
    # SGLangServer reserves ONE bundle per replica: the actor's CPUs and resources plus
    # tp x pp GPUs, on one node (STRICT_PACK).
    deployment = deployment_config(options, engine="sglang", gpus_per_replica=workers)
    if s.get("accelerator_type"):
        resources = deployment["ray_actor_options"].setdefault("resources", {})
        resources.setdefault(f"accelerator_type:{s['accelerator_type']}", 0.001)
    config: dict[str, Any] = {
        "model_loading_config": {"model_id": str(s.get("served_model_name") or s["model"]), "model_source": str(s["model"])},
        "server_cls": SERVER_CLS,
        "engine_kwargs": kwargs,
        "deployment_config": deployment,
        "runtime_env": {"env_vars": {**RUNTIME_ENV_VARS, **{str(k): str(v) for k, v in (s.get("env") or {}).items()}}},
    }
    if s.get("accelerator_type"):
        config["accelerator_type"] = str(s["accelerator_type"])
    validate(config, "sglang")
    return config


def serve_app(cfg: Mapping[str, Any], options: DeploymentOptions):
    """``LLMBackendSpec.serve_app``: Serve's OpenAI-compatible ingress + the SGLang replicas."""
    return build_openai_app(llm_config(cfg, options), "sglang", "SGLang where the application is built (`pip install \"ray[serve,llm]\" \"sglang[all,ray]\"`)")
