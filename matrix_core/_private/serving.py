"""Ray Serve deployments of LLM backends: deploy, wait, inspect, scale, delete.

The contract with backends is in :mod:`matrix_core.deployments`. Serve runs on the joined
Ray cluster with ONE HTTP proxy, on the head node (several raylets of a local cluster share
one address, so a proxy per node would collide), on a port free there; application ``NAME``
answers under ``/NAME``.
"""
from __future__ import annotations

import logging
import re
import time
from typing import Any, Mapping

import httpx

from ..deployments import route_prefix
from ..errors import ConfigError, MatrixError
from ..llm import Endpoint, ServiceHandle
from ..options import DeploymentOptions, parse
from ..specs import LLMBackendSpec

log = logging.getLogger("matrix.serve")

PER_RUN_PREFIX = "run-"  # per-run deployments: run-<id>-<resource>; services have the user's names
_FAILED = ("DEPLOY_FAILED", "UNHEALTHY")
_LOGGING = {"log_level": "WARNING", "enable_access_log": False}  # replicas: no line per request


def _quiet() -> None:
    # Serve logs every deploy step at INFO to the driver's stderr; our own lines say what matters.
    for name in ("ray.serve", "ray.serve._private"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _client(start: bool = False):
    """Serve's controller client on the connected cluster (None when Serve is not running)."""
    from ray.serve.context import _get_global_client

    _quiet()
    client = _get_global_client(raise_if_no_controller_running=False)
    if client is None and start:
        _start_serve()
        client = _get_global_client()
    return client


def _head() -> dict[str, Any]:
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return next((n for n in nodes if "node:__internal_head__" in (n.get("Resources") or {})), nodes[0])


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _start_serve() -> None:
    import ray
    from ray import serve
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    head = _head()
    host = head["NodeManagerAddress"]
    # The port must be free on the head node, where the proxy runs, not here.
    port = ray.get(ray.remote(_free_port).options(
        num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(head["NodeID"], soft=False)).remote(host))
    # WARNING: Serve's controller and proxy log each step at INFO to the driver that started them.
    serve.start(proxy_location="HeadOnly", http_options={"host": host, "port": port}, logging_config={"log_level": "WARNING"})
    log.info("Ray Serve started: HTTP proxy on http://%s:%d", host, port)


def proxy_url(start: bool = False) -> str | None:
    """``http://HOST:PORT`` of Serve's HTTP proxy (starting Serve if ``start``)."""
    client = _client(start)
    if client is None:
        return None
    http = client.http_config
    host = _head()["NodeManagerAddress"] if http.host in ("0.0.0.0", "::", "", None) else http.host
    return f"http://{'[' + host + ']' if ':' in host else host}:{http.port}"


# --- options and resources ----------------------------------------------------------------


def deployment_options(section: Mapping[str, Any], name: str, where: str = "llm") -> DeploymentOptions:
    """``llm.deployment`` validated, named ``name``. A backend's ``replicas`` key (one fixed
    count) stands for ``min_replicas = max_replicas`` when the deployment leaves both at 1."""
    given = dict(section.get("deployment") or {})
    replicas = section.get("replicas")
    if isinstance(replicas, int) and not isinstance(replicas, bool) and replicas > 1 \
            and given.get("min_replicas", 1) == 1 and given.get("max_replicas", 1) == 1:
        given.update(min_replicas=replicas, max_replicas=replicas)
    return parse(DeploymentOptions, {**given, "name": name}, f"{where}.deployment")


def _fmt(resources: Mapping[str, float]) -> str:
    return ", ".join(f"{v:g} {k}" for k, v in sorted(resources.items())) or "nothing"


def check_fits(options: DeploymentOptions) -> None:
    """Fails before deploying when the cluster cannot hold the first replicas: Serve would
    wait for them forever. Resources are the cluster's totals, not what is free now."""
    import ray

    need = options.replica_demand()
    if not need:
        return
    want = max(1, options.initial_replicas if options.initial_replicas is not None else options.min_replicas)
    nodes = [n.get("Resources") or {} for n in ray.nodes() if n.get("Alive")]
    fits = sum(int(min(node.get(k, 0.0) / v for k, v in need.items())) for node in nodes)
    totals = {k: sum(node.get(k, 0.0) for node in nodes) for k in need}
    if fits < want:
        largest = max(nodes, key=lambda node: tuple(node.get(k, 0.0) for k in need), default={})
        raise MatrixError(
            f"deployment {options.name!r} needs {want} replica(s) of {_fmt(need)} each, but the Ray cluster holds {fits}: "
            f"it has {_fmt(totals)} in all, {_fmt({k: largest.get(k, 0.0) for k in need})} on its largest node "
            f"(lower llm.deployment.num_cpus/num_gpus or min_replicas, or add nodes)"
        )
    if fits < options.max_replicas:
        log.warning("deployment %r: the cluster holds %d replica(s) of %s, fewer than max_replicas=%d", options.name, fits, _fmt(need), options.max_replicas)


# --- deploy and wait ----------------------------------------------------------------------


def app_names() -> list[str]:
    from ray import serve

    return sorted(serve.status().applications) if _client() is not None else []


def deploy(spec: LLMBackendSpec, section: Mapping[str, Any], options: DeploymentOptions, *, owned: bool) -> ServiceHandle:
    """Deploy ``spec``'s application as ``options.name``; returns once it answers through the proxy.

    ``owned``: the handle's ``stop()`` deletes the application (a run's own deployment);
    otherwise it is a no-op and the deployment outlives the caller (a service).
    """
    from ray import serve
    from ray.serve.api import RunTarget

    name = options.name
    assert name and spec.serve_app is not None
    if name in app_names():
        raise ConfigError(f"a Ray Serve application named {name!r} already runs on this cluster; stop it first (matrix services stop {name}) or pick another name")
    check_fits(options)
    cfg = {k: v for k, v in section.items() if k not in ("client", "deployment")}
    app = spec.serve_app(cfg, options)  # before Serve starts: a config error costs nothing
    proxy = proxy_url(start=True)
    started = time.monotonic()
    serve.run_many([RunTarget(target=app, name=name, route_prefix=route_prefix(name), logging_config=_LOGGING)],
                   wait_for_ingress_deployment_creation=False, wait_for_applications_running=False)
    try:
        wait_running(name, options.startup_timeout_s)
        model = served_model(proxy, name, deadline=started + options.startup_timeout_s)
    except BaseException:
        delete(name)
        raise
    base_url = f"{proxy}{route_prefix(name)}/v1"
    log.info("deployment %s (%s, model %s) up in %.1fs at %s", name, spec.name, model, time.monotonic() - started, base_url)

    def stop() -> None:
        import ray

        if ray.is_initialized():  # Ray shut down first: the deployment went with it
            delete(name)

    return ServiceHandle([Endpoint(base_url=base_url, model=model)], stop=stop if owned else (lambda: None),
                         info={"serve_app": name, "route_prefix": route_prefix(name), "proxy": proxy, "owned": owned,
                               "backend": spec.name, "model": model})


def _short(message: str) -> str:
    """Serve's status message in one line: the replica's exception, whose message carries
    the engine's log tail (Serve's preamble, the traceback and the actor's repr dropped)."""
    lines = [line.strip() for line in message.splitlines()]
    kept = [line for line in lines if line and not line.startswith(("Traceback", "File ", "ray::", "^")) and not line.endswith("Traceback (most recent call last):")]
    last = kept[-1] if kept else message.strip()
    return last.split(": ", 1)[1] if re.match(r"^[A-Za-z_.]*(Error|Exception): ", last) else last


def _value(status: Any) -> str:
    return str(getattr(status, "value", status))


def wait_running(name: str, timeout_s: float) -> None:
    """Waits until application ``name`` is RUNNING; a failed one raises with Serve's reason."""
    from ray import serve

    deadline = time.monotonic() + timeout_s
    status = None
    while time.monotonic() < deadline:
        status = serve.status().applications.get(name)
        if status is not None:
            if _value(status.status) == "RUNNING":
                return
            if _value(status.status) in _FAILED:
                messages = [d.message for d in status.deployments.values() if d.message] or [status.message]
                raise MatrixError(f"deployment {name!r} failed ({_value(status.status)}): {_short(messages[-1])}")
        time.sleep(0.5)
    why = ""
    if status is not None:
        why = "; ".join(_short(d.message) for d in status.deployments.values() if d.message) or _value(status.status)
    raise MatrixError(f"deployment {name!r} was not running within {timeout_s:g}s (llm.deployment.startup_timeout_s): {why or 'no status'}")


def served_model(proxy: str, name: str, deadline: float) -> str:
    """The model that ``/NAME/v1/models`` lists through the proxy (it learns new routes within seconds)."""
    url = f"{proxy}{route_prefix(name)}/v1/models"
    last = "no answer"
    with httpx.Client(timeout=10, trust_env=False) as http:
        while True:
            try:
                response = http.get(url)
                if response.status_code == 200:
                    served = [m.get("id") for m in response.json().get("data", [])]
                    if served:
                        return str(served[0])
                    last = "lists no model"
                else:
                    last = f"HTTP {response.status_code}"
            except (httpx.HTTPError, ValueError) as exc:
                last = type(exc).__name__
            if time.monotonic() > deadline:
                raise MatrixError(f"deployment {name!r} is running but GET {url} answers {last}")
            time.sleep(0.3)


def delete(name: str) -> None:
    from ray import serve

    if _client() is not None:
        serve.delete(name, _blocking=True)


# --- inspect and scale --------------------------------------------------------------------


def describe() -> dict[str, dict[str, Any]]:
    """Every application: status, message, route, and per deployment the replicas Serve wants
    (``target``) and has running, their pids and the autoscaling bounds."""
    client = _client()
    if client is None:
        return {}
    details = client.get_serve_details()
    apps = {}
    for name, app in (details.get("applications") or {}).items():
        deployments = {}
        for dname, d in (app.get("deployments") or {}).items():
            replicas = d.get("replicas") or []
            auto = ((d.get("deployment_config") or {}).get("autoscaling_config")) or {}
            deployments[dname] = {
                "status": _value(d.get("status")), "message": d.get("message") or "",
                "target": d.get("target_num_replicas"),
                "running": sum(1 for r in replicas if _value(r.get("state")) == "RUNNING"),
                "replicas": [{"state": _value(r.get("state")), "pid": r.get("pid"), "node_ip": r.get("node_ip")} for r in replicas],
                "min_replicas": auto.get("min_replicas"), "max_replicas": auto.get("max_replicas"),
            }
        apps[name] = {"status": _value(app.get("status")), "message": app.get("message") or "", "route_prefix": app.get("route_prefix"),
                      "deployments": deployments}
    return apps


def replica_counts(name: str) -> tuple[int, int]:
    """(wanted, running) replicas of application ``name``, summed over its deployments, as Serve reports them."""
    app = describe().get(name)
    if app is None:
        return 0, 0
    ds = app["deployments"].values()
    return sum(d["target"] or 0 for d in ds), sum(d["running"] for d in ds)


def redeploy(spec: LLMBackendSpec, section: Mapping[str, Any], options: DeploymentOptions) -> None:
    """Apply new options to a running application (Serve updates replica counts in place
    where the deployments' versions are unchanged)."""
    from ray import serve
    from ray.serve.api import RunTarget

    check_fits(options)
    cfg = {k: v for k, v in section.items() if k not in ("client", "deployment")}
    serve.run_many([RunTarget(target=spec.serve_app(cfg, options), name=options.name, route_prefix=route_prefix(options.name),
                              logging_config=_LOGGING)],
                   wait_for_ingress_deployment_creation=False, wait_for_applications_running=False)
    wait_running(options.name, options.startup_timeout_s)


# --- a run's resources ----------------------------------------------------------------------


def start_backend(spec: LLMBackendSpec, section: Mapping[str, Any], deployment_name: str, where: str = "llm") -> ServiceHandle:
    """How a run starts one LLM resource: attach by URL through ``start`` where the section
    says so (``base_url``) or the backend has no deployment; else deploy it for the run."""
    if spec.serve_app is None or (spec.start is not None and section.get("base_url")):
        if spec.start is None:
            raise ConfigError(f"llm backend {spec.name!r} has neither start() nor serve_app()")
        return spec.start(section)
    return deploy(spec, section, deployment_options(section, deployment_name, where), owned=True)
