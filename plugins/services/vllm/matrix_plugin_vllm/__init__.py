"""vLLM as Matrix's LLM service (``llm=vllm``).

Runs and ``matrix services start`` deploy it on Ray Serve (:mod:`.serve_app`, ``ray.serve.llm``);
``start`` only attaches to vLLM servers that already run (``llm.base_url``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from matrix_core import ConfigDirSpec, LLMBackendSpec, ServiceHandle, hookimpl
from matrix_core._private.services import attach_engine
from matrix_core.specs import backend_defaults

CONF_DIR = Path(__file__).parent / "conf"


def defaults() -> dict[str, Any]:
    return backend_defaults(CONF_DIR, "vllm")


def start_vllm(cfg: Mapping[str, Any]) -> ServiceHandle:
    return attach_engine("vllm", defaults(), cfg)


def _serve_app(cfg, options):
    from .serve_app import serve_app

    return serve_app(cfg, options)


@hookimpl
def register_llm_backends(register):
    register(LLMBackendSpec("vllm", start_vllm, serve_app=_serve_app, description="vLLM on Ray Serve (GPU), or attach by URL"))


@hookimpl
def register_config_dirs(register):
    register(ConfigDirSpec("vllm", CONF_DIR, "llm/vllm"))
