"""SGLang as Matrix's LLM service (``llm=sglang``).

Runs and ``matrix services start`` deploy it on Ray Serve (:mod:`.serve_app`, ``ray.serve.llm``);
``start`` only attaches to SGLang servers that already run (``llm.base_url``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from matrix_core import ConfigDirSpec, LLMBackendSpec, ServiceHandle, hookimpl
from matrix_core._private.services import attach_engine
from matrix_core.specs import backend_defaults

CONF_DIR = Path(__file__).parent / "conf"


def defaults() -> dict[str, Any]:
    return backend_defaults(CONF_DIR, "sglang")


def start_sglang(cfg: Mapping[str, Any]) -> ServiceHandle:
    return attach_engine("sglang", defaults(), cfg)


def _serve_app(cfg, options):
    from .serve_app import serve_app

    return serve_app(cfg, options)


@hookimpl
def register_llm_backends(register):
    register(LLMBackendSpec("sglang", start_sglang, serve_app=_serve_app, description="SGLang on Ray Serve (GPU), or attach by URL"))


@hookimpl
def register_config_dirs(register):
    register(ConfigDirSpec("sglang", CONF_DIR, "llm/sglang"))
