"""vLLM's OpenAI-compatible server as Matrix's LLM service (``llm=vllm``).

The launch, health wait and teardown are :mod:`matrix_core._private.launcher`; this module
only turns the config into vLLM's command line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from matrix_core import ConfigDirSpec, LLMBackendSpec, ServiceHandle, hookimpl
from matrix_core._private.launcher import start_server
from matrix_core.specs import backend_defaults

CONF_DIR = Path(__file__).parent / "conf"
FLAGS = {"served_model_name": "--served-model-name", "max_num_seqs": "--max-num-seqs", "gpu_memory_utilization": "--gpu-memory-utilization"}


def defaults() -> dict[str, Any]:
    return backend_defaults(CONF_DIR, "vllm")


def engine_args(s: Mapping[str, Any]) -> list[str]:
    # `vllm serve` takes the model positionally (its --model is deprecated); the older
    # `python -m vllm.entrypoints.openai.api_server` launcher needs --model.
    model = [str(s["model"])] if str(s["launcher"][-1]) == "serve" else ["--model", str(s["model"])]
    args = model + ["--tensor-parallel-size", str(s["tensor_parallel_size"]), "--host", s["host"], "--port", "{port}"]
    for key, flag in FLAGS.items():
        if s.get(key) is not None:
            args += [flag, str(s[key])]
    return args


def start_vllm(cfg: Mapping[str, Any]) -> ServiceHandle:
    return start_server(cfg, engine="vllm", package="vllm", defaults=defaults(), engine_args=engine_args)


def _serve_app(cfg, options):
    from .serve_app import serve_app

    return serve_app(cfg, options)


@hookimpl
def register_llm_backends(register):
    register(LLMBackendSpec("vllm", start_vllm, serve_app=_serve_app, description="vLLM servers as Ray actors (GPU), or attach by URL"))


@hookimpl
def register_config_dirs(register):
    register(ConfigDirSpec("vllm", CONF_DIR, "llm/vllm"))
