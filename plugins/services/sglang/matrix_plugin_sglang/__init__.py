"""SGLang's OpenAI-compatible server as Matrix's LLM service (``llm=sglang``).

The launch, health wait and teardown are :mod:`matrix_core._private.launcher`; this module
only turns the config into SGLang's command line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from matrix_core import ConfigDirSpec, LLMBackendSpec, ServiceHandle, hookimpl
from matrix_core._private.launcher import start_server
from matrix_core.specs import backend_defaults

CONF_DIR = Path(__file__).parent / "conf"
FLAGS = {"served_model_name": "--served-model-name", "max_running_requests": "--max-running-requests", "mem_fraction_static": "--mem-fraction-static"}


def defaults() -> dict[str, Any]:
    return backend_defaults(CONF_DIR, "sglang")


def engine_args(s: Mapping[str, Any]) -> list[str]:
    args = ["--model-path", str(s["model"]), "--tp", str(s["tensor_parallel_size"]), "--host", s["host"], "--port", "{port}"]
    for key, flag in FLAGS.items():
        if s.get(key) is not None:
            args += [flag, str(s[key])]
    return args


def start_sglang(cfg: Mapping[str, Any]) -> ServiceHandle:
    return start_server(cfg, engine="sglang", package="sglang", defaults=defaults(), engine_args=engine_args)


def _serve_app(cfg, options):
    from .serve_app import serve_app

    return serve_app(cfg, options)


@hookimpl
def register_llm_backends(register):
    register(LLMBackendSpec("sglang", start_sglang, serve_app=_serve_app, description="SGLang servers as Ray actors (GPU), or attach by URL"))


@hookimpl
def register_config_dirs(register):
    register(ConfigDirSpec("sglang", CONF_DIR, "llm/sglang"))
