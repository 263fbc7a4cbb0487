"""Build a GPU engine's Serve application where the engine is not installed (tests only).

``ray.serve.llm`` imports the engine's OpenAI protocol models (vLLM's, else SGLang's) and, for
vLLM, its ``AsyncEngineArgs``/``FrontendArgs`` field lists to sort engine kwargs. This module
puts TEST DOUBLES of exactly those in ``sys.modules`` (nothing else of either engine), so
Ray's real builder (``build_openai_app``: deployment options, placement bundles, autoscaling,
ingress) runs on a machine without a GPU. Run it in a subprocess, never in a test process:

    python -m matrix_core._private.engine_doubles matrix_plugin_vllm.serve_app '<cfg json>' '<options json>'

It prints one JSON object: the ingress and each model deployment's Serve options.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import types

# The OpenAI protocol classes ray.llm imports from sglang when vllm's are missing.
PROTOCOL_MODELS = (
    "ChatCompletionRequest", "ChatCompletionResponse", "ChatCompletionStreamResponse", "CompletionRequest",
    "CompletionResponse", "CompletionStreamResponse", "DetokenizeRequest", "DetokenizeResponse", "EmbeddingRequest",
    "EmbeddingResponse", "ScoringRequest", "ScoringResponse", "TokenizeRequest", "TokenizeResponse",
)
# vLLM engine (AsyncEngineArgs) and server (FrontendArgs) argument names the plugin emits; ray.llm
# refuses any engine kwarg in neither list, so a name typed wrong in the plugin fails here.
VLLM_ENGINE_ARGS = ("tensor_parallel_size", "pipeline_parallel_size", "max_model_len", "max_num_seqs",
                    "gpu_memory_utilization", "enable_lora", "max_loras", "max_lora_rank", "enable_prefix_caching")
VLLM_FRONTEND_ARGS = ("enable_auto_tool_choice", "tool_call_parser")


def _module(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    return module


def _dataclass(name: str, fields: tuple[str, ...]) -> type:
    return dataclasses.make_dataclass(name, [(f, object, dataclasses.field(default=None)) for f in fields])


def install(engine: str) -> None:
    from pydantic import BaseModel

    for name in ("sglang", "sglang.srt", "sglang.srt.entrypoints", "sglang.srt.entrypoints.openai"):
        _module(name)
    _module("sglang.srt.entrypoints.openai.protocol", **{n: type(n, (BaseModel,), {}) for n in PROTOCOL_MODELS})
    if engine == "vllm":
        for name in ("vllm", "vllm.engine", "vllm.entrypoints", "vllm.entrypoints.launchers"):
            _module(name)
        _module("vllm.engine.arg_utils", AsyncEngineArgs=_dataclass("AsyncEngineArgs", VLLM_ENGINE_ARGS))
        _module("vllm.entrypoints.launchers.cli_args", FrontendArgs=_dataclass("FrontendArgs", VLLM_FRONTEND_ARGS))


def _options(app) -> dict:
    d = app._bound_deployment
    c, r = d._deployment_config, d._replica_config
    auto = c.autoscaling_config
    return {
        "name": d.name,
        "cls": d.func_or_class.__name__ if hasattr(d.func_or_class, "__name__") else str(d.func_or_class),
        "autoscaling": None if auto is None else {k: getattr(auto, k) for k in ("min_replicas", "max_replicas", "target_ongoing_requests", "initial_replicas", "upscale_delay_s")},
        "max_ongoing_requests": c.max_ongoing_requests,
        "placement_group_bundles": r.placement_group_bundles,
        "placement_group_strategy": r.placement_group_strategy,
        "ray_actor_options": {k: v for k, v in (r.ray_actor_options or {}).items() if k != "runtime_env"},
        "env_vars": ((r.ray_actor_options or {}).get("runtime_env") or {}).get("env_vars", {}),
    }


def main(argv: list[str]) -> None:
    import importlib
    import logging

    module_name, cfg, options = argv[0], json.loads(argv[1]), json.loads(argv[2])
    install("vllm" if "vllm" in module_name else "sglang")
    logging.disable(logging.INFO)  # the builder logs every option at INFO; stdout is the answer
    from matrix_core import DeploymentOptions

    app = importlib.import_module(module_name).serve_app(cfg, DeploymentOptions(**options))
    ingress = app._bound_deployment
    models = {}
    for model_id, sub in ingress.init_kwargs["llm_deployments"].items():
        llm_config = sub._bound_deployment.init_kwargs["llm_config"]
        models[model_id] = _options(sub) | {
            "engine_kwargs": llm_config.engine_kwargs,
            "server_cls": getattr(llm_config.server_cls, "__name__", None),
            "lora_paths": ingress.init_kwargs["lora_paths"].get(model_id),
        }
    print(json.dumps({"ingress": _options(app), "models": models}, default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
