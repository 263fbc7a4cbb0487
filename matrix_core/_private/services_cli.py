"""``matrix services``: long-lived LLM deployments on a Ray cluster, shared by many runs.

``start NAME llm=BACKEND ...`` composes the ``llm`` config group and deploys the backend's
Ray Serve application (``LLMBackendSpec.serve_app``, see :mod:`matrix_core.deployments`) as
application ``NAME``, at ``/NAME`` on Serve's HTTP proxy; a detached registry actor keeps
its backend, model and config (for ``scale``). Runs attach with ``llm=service llm.name=NAME``
or ``llms.ROLE=service:NAME``; a run never stops a service. ``list``, ``status``, ``check``,
``scale`` and ``stop`` read and change the deployment through Serve.
"""
from __future__ import annotations

import json
import logging
import re
import time
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import click

from ..errors import ConfigError, MatrixError
from ..options import RunOptions
from .guards import check_address

NAMESPACE = "matrix-services"
REGISTRY = "matrix-services-registry"
ADDRESS_HELP = "Ray cluster to use (host:port of a `ray start --head`); default: RAY_ADDRESS"


class ServiceRegistry:
    """The detached actor that remembers services: name -> record (plain data, no secrets)."""

    def __init__(self) -> None:
        self._records: dict[str, dict[str, Any]] = {}

    def reserve(self, name: str) -> bool:
        # Taken before the servers start, so two concurrent starts of one name cannot both win.
        if name in self._records:
            return False
        self._records[name] = {"name": name, "status": "starting", "backend": "?", "base_url": None, "model": None}
        return True

    def put(self, record: dict[str, Any]) -> None:
        self._records[record["name"]] = record

    def all(self) -> list[dict[str, Any]]:
        return sorted(self._records.values(), key=lambda r: r["name"])

    def remove(self, name: str) -> dict[str, Any] | None:
        return self._records.pop(name, None)


def registry(create: bool = False):
    """The registry actor of the connected cluster (None if there is none and not ``create``)."""
    import ray

    if create:
        return ray.remote(ServiceRegistry).options(
            name=REGISTRY, namespace=NAMESPACE, lifetime="detached", get_if_exists=True, num_cpus=0
        ).remote()
    try:
        return ray.get_actor(REGISTRY, namespace=NAMESPACE)
    except ValueError:
        return None


def _records() -> list[dict[str, Any]]:
    import ray

    reg = registry()
    return ray.get(reg.all.remote()) if reg is not None else []


def lookup(name: str) -> dict[str, Any]:
    """The record of service ``name`` on the connected cluster; ConfigError lists the running ones."""
    record = _find(name, _records(), " (start one with `matrix services start NAME llm=BACKEND`; join its cluster with --address or --cluster)")
    if record["status"] != "running":
        raise ConfigError(f"service {name!r} is still starting; try again in a moment")
    return record


CLUSTER_HELP = "a cluster from `matrix cluster start NAME` (its address and auth token)"


@contextmanager
def _cluster(address: str | None, cluster: str | None = None) -> Iterator[None]:
    import ray

    if cluster:
        from .clusters import join

        address = join(cluster)
    if not address or address == "local":
        # A Ray started just for this command would take the services down with it.
        raise ConfigError("matrix services needs a running Ray cluster: pass --cluster NAME, --address HOST:PORT or set RAY_ADDRESS (start one with `matrix cluster start NAME --local`)")
    started = False
    if not ray.is_initialized():
        check_address(address, RunOptions().connect_timeout_s)  # ray.init would retry a dead address for minutes
        try:  # the replicas' and Serve's logs stay in the cluster's log files, not this command's output
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except Exception as exc:  # Ray raises a bare Exception when it cannot connect
            raise MatrixError(f"cannot start or join Ray at {address!r}: {exc}") from None
        started = True
    try:
        yield
    finally:
        if started:
            ray.shutdown()



def compose_llm(overrides: Sequence[str]) -> dict[str, Any]:
    """The ``llm`` group composed alone over the typed defaults (``llm.client``, ``llm.deployment``):
    ``llm=BACKEND`` plus ``llm.key=value`` overrides."""
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from ..config import CONFIG_MODULE, one_line, register_nodes

    args = []
    for override in overrides:
        key = override.lstrip("+~").split("=", 1)[0]
        if key != "llm" and not key.startswith("llm."):
            raise ConfigError(f"matrix services start takes llm overrides only (llm=BACKEND, llm.key=value), got {override!r}")
        # No primary config here, so the group is added rather than overridden.
        args.append("+" + override if override.startswith("llm=") else override)
    if not any(a.startswith("+llm=") for a in args):
        raise ConfigError("name the backend: matrix services start NAME llm=BACKEND [llm.key=value ...]")
    register_nodes()
    try:
        with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
            cfg = compose(config_name="matrix_options", overrides=args)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(one_line(exc).replace("In 'matrix_options': ", "")) from None
    from omegaconf import OmegaConf

    try:  # the llm subtree only: the other typed defaults interpolate a workflow there is none of
        return OmegaConf.to_container(cfg.llm, resolve=True, throw_on_missing=True)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        raise ConfigError(f"llm: {one_line(exc)}") from None


def probe(base_url: str, timeout: float = 3.0) -> str | None:
    """None if the server at ``base_url`` (…/v1) answers, else why not."""
    import httpx

    root = base_url.rstrip("/").removesuffix("/v1")
    try:
        response = httpx.get(root + "/health", timeout=timeout, trust_env=False)
        if response.status_code != 200:  # not every server has /health
            response = httpx.get(base_url.rstrip("/") + "/models", timeout=timeout, trust_env=False)
    except httpx.HTTPError as exc:
        return f"unreachable ({type(exc).__name__})"
    return None if response.status_code == 200 else f"HTTP {response.status_code}"




def _serving():
    from . import serving

    return serving


def _backend(name: str):
    from ..plugins import get_plugin_host

    return get_plugin_host().get("llm_backend", str(name))


def _rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Services (and deployments of runs) with what Serve says of them now."""
    apps = _serving().describe()
    rows = []
    for record in records:
        app = apps.pop(record["name"], None)
        rows.append(_row(record, app))
    for name, app in sorted(apps.items()):  # a run's own deployment, or one made outside matrix
        rows.append(_row({"name": name, "backend": "(run)" if name.startswith(_serving().PER_RUN_PREFIX) else "?", "model": None,
                          "base_url": None, "status": "running"}, app))
    return rows


def _row(record: dict[str, Any], app: dict[str, Any] | None) -> dict[str, Any]:
    row = {k: v for k, v in record.items() if k != "config"}
    if record.get("config") is not None:
        from .driver import redact

        row["config"] = redact(record["config"])
    if app is None:
        row.update(health="starting" if record.get("status") == "starting" else "missing", wanted=0, running=0, replicas=[])
        return row
    ds = list(app["deployments"].values())
    row.update(
        health={"RUNNING": "healthy"}.get(app["status"], app["status"].lower()),
        serve_status=app["status"], message=app["message"] or "; ".join(d["message"] for d in ds if d["message"]),
        wanted=sum(d["target"] or 0 for d in ds), running=sum(d["running"] for d in ds),
        min_replicas=sum(d["min_replicas"] or 0 for d in ds) if all(d["min_replicas"] is not None for d in ds) else None,
        max_replicas=sum(d["max_replicas"] or 0 for d in ds) if all(d["max_replicas"] is not None for d in ds) else None,
        replicas=[r for d in ds for r in d["replicas"]],
    )
    return row


def _unknown(name: str, records: list[dict[str, Any]], hint: str = "") -> ConfigError:
    known = ", ".join(f"{r['name']} ({r['backend']})" for r in records) or "none"
    return ConfigError(f"unknown service {name!r}; running on this Ray cluster: {known}{hint}")


def _find(name: str, records: list[dict[str, Any]], hint: str = "") -> dict[str, Any]:
    record = next((r for r in records if r["name"] == name), None)
    if record is None:
        raise _unknown(name, records, hint)
    return record


@click.group("services")
def services_group() -> None:
    """Long-lived LLM deployments (Ray Serve) on a Ray cluster; runs use one with llm=service llm.name=NAME."""


@services_group.command("start", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("overrides", nargs=-1, type=click.UNPROCESSED)
@click.option("--address", envvar="RAY_ADDRESS", help=ADDRESS_HELP)
@click.option("--cluster", help=CLUSTER_HELP)
def start_command(name: str, overrides: Sequence[str], address: str | None, cluster: str | None) -> None:
    """Deploy service NAME: llm=BACKEND [llm.key=value ...] [llm.deployment.min_replicas=1 llm.deployment.max_replicas=4 ...]."""
    import ray

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ConfigError(f"service name {name!r}: use letters, digits, '_', '.', '-'")
    serving = _serving()
    if name.startswith(serving.PER_RUN_PREFIX):
        raise ConfigError(f"service name {name!r}: names starting with {serving.PER_RUN_PREFIX!r} are kept for the deployments of runs")
    llm = compose_llm(overrides)
    backend = str(llm.get("backend"))
    spec = _backend(backend)
    if spec.serve_app is None:
        raise ConfigError(f"llm backend {backend!r} cannot run as a service (it has no Ray Serve deployment); "
                          f"use it in the run itself: matrix run WORKFLOW llm={backend} ...")
    options = serving.deployment_options(llm, name)
    with _cluster(address, cluster):
        reg = registry(create=True)
        if not ray.get(reg.reserve.remote(name)):
            raise ConfigError(f"service {name!r} already exists; stop it first: matrix services stop {name}")
        try:
            handle = serving.deploy(spec, llm, options, owned=False)
        except BaseException:
            ray.get(reg.remove.remote(name))
            raise
        endpoint = handle.endpoints[0]
        ray.get(reg.put.remote({
            "name": name, "backend": backend, "status": "running", "base_url": endpoint.base_url, "model": endpoint.model,
            "config": llm, "started": time.time(),
        }))
    click.echo(f"service {name} started ({backend}, model {endpoint.model}, replicas {options.min_replicas}..{options.max_replicas}): {endpoint.base_url}")


@services_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--address", envvar="RAY_ADDRESS", help=ADDRESS_HELP)
@click.option("--cluster", help=CLUSTER_HELP)
def list_command(as_json: bool, address: str | None, cluster: str | None) -> None:
    """Services on the cluster: replicas wanted/running, health, endpoint, model."""
    with _cluster(address, cluster):
        rows = _rows(_records())
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        click.echo("no services on this cluster (start one: matrix services start NAME llm=BACKEND)")
        return
    click.echo(f"{'NAME':<20} {'BACKEND':<10} {'REPLICAS':<12} {'HEALTH':<14} {'MODEL':<24} ENDPOINT")
    for r in rows:
        bounds = f" ({r['min_replicas']}-{r['max_replicas']})" if r.get("max_replicas") is not None else ""
        replicas = f"{r['running']}/{r['wanted']}{bounds}"
        click.echo(f"{r['name']:<20} {r['backend']:<10} {replicas:<12} {r['health']:<14} "
                   f"{str(r.get('model') or '-'):<24} {r.get('base_url') or '-'}")


@services_group.command("status")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--address", envvar="RAY_ADDRESS", help=ADDRESS_HELP)
@click.option("--cluster", help=CLUSTER_HELP)
def status_command(name: str, as_json: bool, address: str | None, cluster: str | None) -> None:
    """One service in detail: Serve's status and message, each replica, autoscaling bounds, config."""
    with _cluster(address, cluster):
        records = _records()
        record = next((r for r in records if r["name"] == name), None)
        if record is None:
            raise _unknown(name, records)
        [row] = _rows([record])[:1]
    if as_json:
        click.echo(json.dumps(row, indent=2, default=str))
        return
    click.echo(f"service {name}: {row['health']} ({row['backend']}, model {row.get('model')})")
    click.echo(f"  endpoint  {row.get('base_url')}")
    click.echo(f"  replicas  {row['running']} running, {row['wanted']} wanted, autoscaling {row.get('min_replicas')}..{row.get('max_replicas')}")
    for r in row["replicas"]:
        click.echo(f"    {r['state']:<10} pid {r['pid']} on {r['node_ip']}")
    if row.get("message"):
        click.echo(f"  message   {row['message']}")
    click.echo(f"  started   {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(row.get('started') or 0))}")


@services_group.command("check")
@click.argument("name")
@click.option("--address", envvar="RAY_ADDRESS", help=ADDRESS_HELP)
@click.option("--cluster", help=CLUSTER_HELP)
def check_command(name: str, address: str | None, cluster: str | None) -> None:
    """Real calls to service NAME: a chat, a tool call, a JSON-schema answer; each pass/fail with latency."""
    from .service_check import run_checks

    with _cluster(address, cluster):
        record = lookup(name)
    results = run_checks(record)
    for r in results:
        click.echo(f"{ {True: 'PASS', False: 'FAIL', None: 'SKIP'}[r['ok']]}  {r['check']:<12} {r['latency_s']:7.2f}s  {r['detail']}")
    if any(r["ok"] is False for r in results):
        raise SystemExit(1)


@services_group.command("scale")
@click.argument("name")
@click.argument("bounds", nargs=-1)
@click.option("--address", envvar="RAY_ADDRESS", help=ADDRESS_HELP)
@click.option("--cluster", help=CLUSTER_HELP)
def scale_command(name: str, bounds: Sequence[str], address: str | None, cluster: str | None) -> None:
    """Change NAME's autoscaling bounds: min=N max=N [target=N] (Serve resizes in place)."""
    import ray

    keys = {"min": "min_replicas", "max": "max_replicas", "target": "target_ongoing_requests"}
    changes: dict[str, Any] = {}
    for item in bounds:
        key, sep, value = item.partition("=")
        if not sep or key not in keys:
            raise ConfigError(f"matrix services scale {name}: {item!r} is not min=N, max=N or target=N")
        changes[keys[key]] = value
    if not changes:
        raise ConfigError(f"matrix services scale {name}: give min=N and/or max=N (target=N: ongoing requests per replica)")
    serving = _serving()
    with _cluster(address, cluster):
        record = _find(name, _records())
        config = dict(record["config"])
        config["deployment"] = {**(config.get("deployment") or {}), **changes}
        config.pop("replicas", None)  # the bounds given win over a fixed count
        options = serving.deployment_options(config, name)
        serving.redeploy(_backend(record["backend"]), config, options)
        ray.get(registry().put.remote({**record, "config": config}))
    click.echo(f"service {name}: replicas {options.min_replicas}..{options.max_replicas}, target {options.target_ongoing_requests:g} ongoing requests each")


@services_group.command("stop")
@click.argument("name")
@click.option("--address", envvar="RAY_ADDRESS", help=ADDRESS_HELP)
@click.option("--cluster", help=CLUSTER_HELP)
def stop_command(name: str, address: str | None, cluster: str | None) -> None:
    """Stop service NAME: delete its Serve application (every replica and engine) and forget it.
    A run's own deployment left behind by a driver that died (``run-...`` in ``list``) stops too."""
    import ray

    serving = _serving()
    with _cluster(address, cluster):
        records = _records()
        if name in {r["name"] for r in records}:
            serving.delete(name)
            ray.get(registry().remove.remote(name))
        elif name.startswith(serving.PER_RUN_PREFIX) and name in serving.app_names():
            serving.delete(name)
        else:
            raise _unknown(name, records)
    click.echo(f"service {name} stopped")
