"""``matrix services``: long-lived LLM services on a Ray cluster, shared by many runs.

``start`` composes the ``llm`` config group, starts the backend with ``detached: true`` and
records the service in a detached registry actor; runs attach with
``llm=service llm.name=NAME``. A backend supports this when its ``start()`` honours
``detached`` (and the optional ``service_name``) and its handle's ``info`` reports
``detached: True`` with the ``namespace`` and ``actors`` (names) that ``stop`` kills.
"""
from __future__ import annotations

import json
import re
import time
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import click

from ..errors import ConfigError

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
        self._records[name] = {"name": name, "status": "starting", "backend": "?", "endpoints": []}
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
    """The record of service ``name`` on the connected cluster; ConfigError lists the known ones."""
    records = _records()
    record = next((r for r in records if r["name"] == name), None)
    if record is None:
        known = ", ".join(r["name"] for r in records) or "none"
        raise ConfigError(
            f"unknown service {name!r}; known on this Ray cluster: {known} "
            f"(start one with `matrix services start NAME llm=BACKEND`; join its cluster with --address)"
        )
    if record["status"] != "running":
        raise ConfigError(f"service {name!r} is still starting; try again in a moment")
    return record


CLUSTER_HELP = "a cluster from `matrix cluster start NAME` (its address and auth token)"


@contextmanager
def _cluster(address: str | None, cluster: str | None = None) -> Iterator[None]:
    import ray

    from .driver import init_ray

    if cluster:
        from .clusters import join

        address = join(cluster)
    if not address or address == "local":
        # A Ray started just for this command would take the services down with it.
        raise ConfigError("matrix services needs a running Ray cluster: pass --cluster NAME, --address HOST:PORT or set RAY_ADDRESS (start one with `matrix cluster start NAME --local`)")
    started = init_ray({"address": address})
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def compose_llm(overrides: Sequence[str]) -> dict[str, Any]:
    """The ``llm`` group composed alone: ``llm=BACKEND`` plus ``llm.key=value`` overrides."""
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from ..config import CONFIG_MODULE, one_line, to_plain

    args = []
    for override in overrides:
        key = override.lstrip("+~").split("=", 1)[0]
        if key != "llm" and not key.startswith("llm."):
            raise ConfigError(f"matrix services start takes llm overrides only (llm=BACKEND, llm.key=value), got {override!r}")
        # No primary config here, so the group is added rather than overridden.
        args.append("+" + override if override.startswith("llm=") else override)
    if not any(a.startswith("+llm=") for a in args):
        raise ConfigError("name the backend: matrix services start NAME llm=BACKEND [llm.key=value ...]")
    try:
        with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
            cfg = compose(config_name=None, overrides=args)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(one_line(exc).replace("In '_dummy_empty_config_': ", "")) from None
    return to_plain(cfg)["llm"]


def probe(base_url: str, timeout: float = 3.0) -> str | None:
    """None if the server at ``base_url`` (…/v1) answers, else why not."""
    import httpx

    root = base_url.rstrip("/").removesuffix("/v1")
    try:
        response = httpx.get(root + "/health", timeout=timeout)
        if response.status_code != 200:  # not every server has /health
            response = httpx.get(base_url.rstrip("/") + "/models", timeout=timeout)
    except httpx.HTTPError as exc:
        return f"unreachable ({type(exc).__name__})"
    return None if response.status_code == 200 else f"HTTP {response.status_code}"


@click.group("services")
def services_group() -> None:
    """Long-lived LLM services on a Ray cluster; runs use one with llm=service llm.name=NAME."""


@services_group.command("start", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("overrides", nargs=-1, type=click.UNPROCESSED)
@click.option("--address", envvar="RAY_ADDRESS", help=ADDRESS_HELP)
@click.option("--cluster", help=CLUSTER_HELP)
def start_command(name: str, overrides: Sequence[str], address: str | None, cluster: str | None) -> None:
    """Start service NAME from the llm config group: llm=BACKEND [llm.key=value ...]."""
    import ray

    from ..plugins import get_plugin_host
    from .driver import redact

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ConfigError(f"service name {name!r}: use letters, digits, '_', '.', '-'")
    llm = compose_llm(overrides)
    backend = llm.get("backend")
    spec = get_plugin_host().get("llm_backend", str(backend))
    with _cluster(address, cluster):
        reg = registry(create=True)
        if not ray.get(reg.reserve.remote(name)):
            raise ConfigError(f"service {name!r} already exists; stop it first: matrix services stop {name}")
        try:
            handle = spec.start({**llm, "detached": True, "service_name": name})
            if not handle.info.get("detached"):
                handle.stop()
                raise ConfigError(f"llm backend {backend!r} cannot run as a service: its start() does not honour llm.detached")
        except BaseException:
            ray.get(reg.remove.remote(name))
            raise
        endpoints = [{"base_url": e.base_url, "model": e.model} for e in handle.endpoints]
        ray.get(reg.put.remote({
            "name": name, "backend": backend, "status": "running", "endpoints": endpoints,
            "namespace": handle.info.get("namespace", NAMESPACE), "actors": list(handle.info.get("actors") or []),
            "config": redact({k: v for k, v in llm.items() if k != "client"}), "started": time.time(),
        }))
    click.echo(f"service {name} started ({backend}): {', '.join(e['base_url'] for e in endpoints)}")


@services_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--address", envvar="RAY_ADDRESS", help=ADDRESS_HELP)
@click.option("--cluster", help=CLUSTER_HELP)
def list_command(as_json: bool, address: str | None, cluster: str | None) -> None:
    """Services on the cluster, with the health of each endpoint."""
    with _cluster(address, cluster):
        records = _records()
    for record in records:
        for endpoint in record["endpoints"]:
            problem = probe(endpoint["base_url"])
            endpoint["healthy"], endpoint["detail"] = problem is None, problem or "ok"
        record["healthy"] = bool(record["endpoints"]) and all(e["healthy"] for e in record["endpoints"])
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    if not records:
        click.echo("no services on this cluster (start one: matrix services start NAME llm=BACKEND)")
        return
    click.echo(f"{'NAME':<16} {'BACKEND':<10} {'HEALTH':<12} ENDPOINTS")
    for r in records:
        up = sum(e["healthy"] for e in r["endpoints"])
        health = r["status"] if r["status"] != "running" else ("healthy" if r["healthy"] else f"down {len(r['endpoints']) - up}/{len(r['endpoints'])}")
        endpoints = ", ".join(f"{e['base_url']} ({e['model']}{'' if e['healthy'] else ', ' + e['detail']})" for e in r["endpoints"])
        click.echo(f"{r['name']:<16} {r['backend']:<10} {health:<12} {endpoints}")


@services_group.command("stop")
@click.argument("name")
@click.option("--address", envvar="RAY_ADDRESS", help=ADDRESS_HELP)
@click.option("--cluster", help=CLUSTER_HELP)
def stop_command(name: str, address: str | None, cluster: str | None) -> None:
    """Stop service NAME: kill its actors and forget it."""
    import ray

    with _cluster(address, cluster):
        records = {r["name"]: r for r in _records()}
        if name not in records:
            raise ConfigError(f"unknown service {name!r}; known on this Ray cluster: {', '.join(records) or 'none'}")
        record = records[name]
        for actor in record.get("actors") or []:
            try:
                ray.kill(ray.get_actor(actor, namespace=record.get("namespace") or NAMESPACE))
            except ValueError:  # already gone (crashed)
                pass
        reg = registry()
        ray.get(reg.remove.remote(name))
    click.echo(f"service {name} stopped")
