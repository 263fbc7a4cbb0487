"""Inference servers (vLLM, SGLang, ...) as subprocesses of Ray actors, one actor per replica.

An engine plugin supplies the command line; this module asks Ray for the replica's resources,
starts the command in its own process group, waits for ``/health`` and ``/v1/models``, and
tears the group down (SIGTERM, then SIGKILL). With ``base_url`` set it attaches instead.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import httpx

from ..errors import ConfigError, MatrixError
from ..llm import Endpoint, ServiceHandle
from .ray_errors import last_line

log = logging.getLogger("matrix.launcher")

LOOPBACK = ("127.0.0.1", "localhost", "::1")
# Run in the child before exec: it dies with the actor even when Ray SIGKILLs the actor
# (owner gone, ray.kill, ray.shutdown), which leaves no chance for a clean stop().
_DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)\n"  # PR_SET_PDEATHSIG
    "if os.getppid() != int(os.environ.pop('MATRIX_LAUNCHER_PARENT')): sys.exit(1)\n"  # parent already gone
    "os.execvp(sys.argv[1], sys.argv[1:])\n"
)


@dataclass(frozen=True)
class ServerSpec:
    """One engine deployment: ``replicas`` copies of ``argv``, each in its own actor.

    ``argv[0] == "python"`` means the Ray worker's interpreter; ``{port}`` in ``argv`` is
    replaced by the replica's port. ``package`` must be importable in the worker.
    """

    engine: str
    argv: tuple[str, ...]
    model: str
    package: str | None = None
    install_hint: str = ""
    replicas: int = 1
    host: str = "127.0.0.1"
    port: int = 0
    num_cpus: float = 1
    num_gpus: float = 0
    resources: Mapping[str, float] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    startup_timeout_s: float = 1800
    stop_timeout_s: float = 30
    gpu_reason: str = ""

    def need(self) -> dict[str, float]:
        """Ray resources of one replica, by Ray's names (CPU, GPU, custom)."""
        need = {"CPU": float(self.num_cpus), "GPU": float(self.num_gpus), **{k: float(v) for k, v in self.resources.items()}}
        return {k: v for k, v in need.items() if v > 0}


class ServerProcess:
    """The Ray actor behind one replica: owns the server's process group."""

    def __init__(self, spec: ServerSpec, index: int):
        self.spec = spec
        self.index = index
        self.proc: subprocess.Popen | None = None
        self.log_path = ""
        self.port = 0

    def start(self) -> dict[str, Any]:
        import importlib.util

        import ray

        spec = self.spec
        node = ray.util.get_node_ip_address()
        if spec.package and importlib.util.find_spec(spec.package) is None:
            return {"error": f"{spec.engine} is not installed in the Ray worker environment on {node}: {spec.install_hint or 'pip install ' + spec.package}"}
        argv = list(spec.argv)
        if argv[0] == "python":
            argv[0] = sys.executable
        elif shutil.which(argv[0]) is None:
            return {"error": f"{argv[0]!r} is not on the PATH of the Ray worker on {node}"}
        self.port = spec.port + self.index if spec.port else _free_port(spec.host)
        argv = [a.replace("{port}", str(self.port)) for a in argv]
        fd, self.log_path = tempfile.mkstemp(prefix=f"matrix-{spec.engine}-{self.index}-", suffix=".log")
        env = {**os.environ, **{k: str(v) for k, v in spec.env.items()}, "MATRIX_LAUNCHER_PARENT": str(os.getpid())}
        with os.fdopen(fd, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _DIE_WITH_PARENT, *argv],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,  # its own process group: stop() takes the engine's workers too
            )
        host = node if spec.host in ("0.0.0.0", "::", "") else spec.host
        return {"pid": self.proc.pid, "port": self.port, "node": node, "log": self.log_path,
                "url": f"http://{_url_host(host)}:{self.port}/v1", "argv": argv}

    def wait_ready(self, timeout_s: float, what: str) -> dict[str, Any]:
        """Polls until ``/health`` answers 200 and ``/v1/models`` lists the model."""
        probe_host = "127.0.0.1" if self.spec.host in ("0.0.0.0", "") else ("::1" if self.spec.host == "::" else self.spec.host)
        root = f"http://{_url_host(probe_host)}:{self.port}"
        deadline = time.monotonic() + timeout_s
        last = "no answer yet"
        # trust_env=False: a proxy from the environment must not answer for a local server.
        with httpx.Client(timeout=5, trust_env=False) as http:
            while time.monotonic() < deadline:
                code = self.proc.poll()
                if code is not None:
                    return {"error": f"the server exited with code {code} before it was ready", "tail": self.tail()}
                try:
                    health = http.get(root + "/health")
                    if health.status_code == 200:
                        models = http.get(root + "/v1/models")
                        served = [m.get("id") for m in models.json().get("data", [])] if models.status_code == 200 else []
                        if self.spec.model in served:
                            return {"served": served}
                        last = f"/v1/models lists {served or 'nothing'}, not {self.spec.model!r}"
                    else:
                        last = f"GET /health answered HTTP {health.status_code}"
                except (httpx.HTTPError, ValueError) as exc:
                    last = f"GET {root}/health: {type(exc).__name__}"
                time.sleep(0.5)
        return {"error": f"the server was not ready within {what} ({last})", "tail": self.tail()}

    def tail(self, lines: int = 5) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, os.path.getsize(self.log_path) - 8192))
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return " | ".join([line.strip() for line in text.splitlines() if line.strip()][-lines:])

    def stop(self, timeout_s: float) -> list[int]:
        """Stops the process group and any descendant that left it; returns the pids stopped."""
        import psutil

        if self.proc is None:
            return []
        crashed = self.proc.poll() is not None
        try:
            procs = [psutil.Process(self.proc.pid)]
            procs += procs[0].children(recursive=True)
        except psutil.NoSuchProcess:
            procs = []
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            for p in procs:
                try:
                    p.send_signal(sig)
                except psutil.NoSuchProcess:
                    pass
            _, alive = psutil.wait_procs(procs, timeout=timeout_s if sig == signal.SIGTERM else 5)
            if not alive:
                break
        try:
            self.proc.wait(timeout=5)  # reap, unless psutil already did
        except subprocess.TimeoutExpired:
            pass
        if not crashed:
            try:
                os.unlink(self.log_path)  # kept when the server had died on its own
            except OSError:
                pass
        self.proc = None
        return [p.pid for p in procs]


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.bind((host if host not in ("", "localhost") else "127.0.0.1", 0))
        return s.getsockname()[1]


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def actor_options(spec: ServerSpec, driver_node: str | None = None) -> dict[str, Any]:
    """Ray options for one replica's actor. Loopback servers must run on the driver's node."""
    # max_concurrency 1: Ray runs the methods on the worker's main thread, the thread the
    # child's parent-death signal is tied to.
    options: dict[str, Any] = {"num_cpus": spec.num_cpus, "num_gpus": spec.num_gpus, "max_restarts": 0, "max_concurrency": 1}
    if spec.resources:
        options["resources"] = dict(spec.resources)
    if spec.host in LOOPBACK:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(driver_node, soft=False)
    return options


def check_resources(spec: ServerSpec, nodes: Sequence[Mapping[str, Any]]) -> None:
    """Fails fast when no node can hold a replica: Ray would wait forever instead.

    ``nodes`` are ``ray.nodes()`` entries (already narrowed to the driver's node for loopback).
    """
    need = spec.need()
    where = "the driver's Ray node (llm.host is loopback)" if spec.host in LOOPBACK else "the Ray cluster"
    caps = [n.get("Resources") or {} for n in nodes if n.get("Alive", True)]
    if need.get("GPU") and not any(c.get("GPU") for c in caps):
        raise MatrixError(f"{spec.engine} needs {need['GPU']:g} GPU(s) per replica{spec.gpu_reason} but {where} has no GPU")
    fits = sum(int(min(c.get(k, 0) / v for k, v in need.items())) if need else spec.replicas for c in caps)
    if fits < spec.replicas:
        biggest = max(caps, key=lambda c: c.get("GPU", 0), default={})
        have = {k: biggest.get(k, 0) for k in need}
        raise MatrixError(
            f"{where} can hold {fits} of {spec.replicas} {spec.engine} replica(s): each needs {need}, "
            f"the largest node has {have}"
        )


def _wait_ready(spec: ServerSpec, actors: list, replicas: list[dict[str, Any]], deadline: float) -> None:
    """Waits until every started server answers; a server that died says why, with its log."""
    import ray

    what = f"llm.startup_timeout_s={spec.startup_timeout_s:g}"
    ready = ray.get([a.wait_ready.remote(max(1.0, deadline - time.monotonic()), what) for a in actors])
    for i, r in enumerate(ready):
        if "error" in r:
            raise MatrixError(
                f"{spec.engine} replica {i} on {replicas[i]['url']}: {r['error']}; "
                f"last log lines: {r['tail'] or '(none)'} (full log: {replicas[i]['log']} on {replicas[i]['node']})"
            )


def launch(spec: ServerSpec) -> ServiceHandle:
    """Starts ``spec.replicas`` servers and waits until each serves ``spec.model``."""
    import ray

    driver_node = ray.get_runtime_context().get_node_id()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    check_resources(spec, [n for n in nodes if n["NodeID"] == driver_node] if spec.host in LOOPBACK else nodes)
    options = actor_options(spec, driver_node)
    actor_cls = ray.remote(ServerProcess)
    actors = [actor_cls.options(**options).remote(spec, i) for i in range(spec.replicas)]
    replicas: list[dict[str, Any]] = [{} for _ in actors]

    pending: dict[Any, int] = {}

    def stop() -> None:
        if pending:  # replicas that started while another failed: their pids are needed to stop them
            done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=5)
            for ref in done:
                try:
                    replicas[pending.pop(ref)] = ray.get(ref)
                except ray.exceptions.RayError:
                    pass
        if actors:
            _stop(actors, replicas, spec.stop_timeout_s)
            actors.clear()

    deadline = time.monotonic() + spec.startup_timeout_s
    started = time.monotonic()
    try:
        pending.update({a.start.remote(): i for i, a in enumerate(actors)})
        while pending:
            done, _ = ray.wait(list(pending), timeout=max(0.0, deadline - time.monotonic()))
            if not done:
                raise MatrixError(
                    f"{len(pending)} {spec.engine} replica(s) were not placed within {spec.startup_timeout_s:g}s: "
                    f"each needs {spec.need()} and Ray has free {_free(spec)}"
                )
            for ref in done:
                i = pending.pop(ref)
                replicas[i] = ray.get(ref)
                if "error" in replicas[i]:
                    raise MatrixError(replicas[i]["error"])
        _wait_ready(spec, actors, replicas, deadline)
    except ray.exceptions.RayError as exc:
        stop()
        raise MatrixError(f"a {spec.engine} replica's actor failed: {last_line(exc)}") from None
    except BaseException:
        stop()
        raise
    log.info("%s up in %.1fs: %s", spec.engine, time.monotonic() - started, ", ".join(r["url"] for r in replicas))
    endpoints = [Endpoint(base_url=r["url"], model=spec.model) for r in replicas]
    return ServiceHandle(endpoints, stop=stop, info={"engine": spec.engine, "replicas": replicas, "options": {k: v for k, v in options.items() if k != "scheduling_strategy"}})


def _free(spec: ServerSpec) -> dict[str, float]:
    import ray

    free = ray.available_resources()
    return {k: free.get(k, 0) for k in spec.need()}


def _stop(actors: list, replicas: list[dict[str, Any]], timeout_s: float) -> None:
    import ray

    if not ray.is_initialized():
        return  # Ray shut down first: its workers are gone and the servers got SIGTERM with them
    refs = [a.stop.remote(timeout_s) for a, r in zip(actors, replicas) if r.get("pid")]
    try:
        ray.get(refs, timeout=timeout_s + 15)
    except Exception as exc:  # an actor that died already took its server with it
        log.warning("stopping servers: %s", exc)
    for a in actors:
        try:
            ray.kill(a)
        except Exception:
            pass


def start_server(
    cfg: Mapping[str, Any],
    *,
    engine: str,
    package: str,
    defaults: Mapping[str, Any],
    engine_args: Callable[[Mapping[str, Any]], list[str]],
) -> ServiceHandle:
    """The ``start`` of an engine backend: attach to ``base_url`` or launch ``launcher`` + ``engine_args(settings)``.

    ``settings`` are ``defaults`` (the plugin's yaml) overlaid with ``cfg``; the keys read here
    are common to every engine (see the vllm plugin's yaml).
    """
    s = {k: v for k, v in {**defaults, **cfg}.items() if k != "client"}
    if s.get("base_url"):
        from .services import start_endpoint

        return start_endpoint({"base_url": s["base_url"], "model": s.get("served_model_name") or s.get("model"), "api_key_env": s.get("api_key_env")})
    return launch(server_spec(s, engine=engine, package=package, engine_args=engine_args))


def server_spec(s: Mapping[str, Any], *, engine: str, package: str, engine_args: Callable[[Mapping[str, Any]], list[str]]) -> ServerSpec:
    if not s.get("model"):
        raise ConfigError(f"llm.model is not set: name the model {engine} should serve (or set llm.base_url to attach to running servers)")
    try:
        tp = int(_get(s, "tensor_parallel_size", 1))
        replicas = int(_get(s, "replicas", 1))
        port = int(_get(s, "port", 0))
        num_gpus = float(_get(s, "num_gpus", tp))
        num_cpus = float(_get(s, "num_cpus", 1))
        timeouts = float(_get(s, "startup_timeout_s", 1800)), float(_get(s, "stop_timeout_s", 30))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"llm ({engine}): {exc}") from None
    if tp < 1 or replicas < 1:
        raise ConfigError("llm.tensor_parallel_size and llm.replicas must be at least 1")
    if port and not 0 < port + replicas - 1 <= 65535:
        raise ConfigError(f"llm.port={port} leaves no room for {replicas} replica(s) below 65536")
    launcher = s.get("launcher") or []
    if isinstance(launcher, str) or not launcher:
        raise ConfigError(f"llm.launcher must be a non-empty list, e.g. [python, -m, {package}...]")
    host = str(s.get("host") or "127.0.0.1")
    s = {**s, "tensor_parallel_size": tp, "host": host}
    argv = [str(a) for a in launcher] + engine_args(s) + [str(a) for a in (s.get("extra_args") or [])]
    # Only `python -m <engine>...` tells us which package the worker must have.
    checks = package if len(launcher) > 2 and list(launcher[:2]) == ["python", "-m"] and str(launcher[2]).split(".")[0] == package else None
    return ServerSpec(
        engine=engine,
        argv=tuple(argv),
        model=str(s.get("served_model_name") or s["model"]),
        package=checks,
        install_hint=f"pip install {package}",
        replicas=replicas,
        host=host,
        port=port,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        resources={str(k): float(v) for k, v in (s.get("resources") or {}).items()},
        env={str(k): str(v) for k, v in (s.get("env") or {}).items()},
        startup_timeout_s=timeouts[0],
        stop_timeout_s=timeouts[1],
        gpu_reason=f" (tensor_parallel_size={tp})" if s.get("num_gpus") is None else "",
    )


def _get(s: Mapping[str, Any], key: str, default: Any) -> Any:
    return default if s.get(key) is None else s[key]
