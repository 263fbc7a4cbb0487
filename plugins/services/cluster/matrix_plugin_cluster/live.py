"""What a running cluster holds: nodes and their resources, Serve applications, Matrix runs.

``collect()`` reads the GCS of the connected cluster. Through Ray Client (``ray://``, a
Slurm cluster seen from a login node) it runs as a zero-CPU task inside the cluster.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Any, Iterator

from matrix_core.errors import MatrixError

# The driver names its actors matrix-sink-<run_id> and matrix-host-<run_id>-<i>.
RUN_ACTOR = re.compile(r"^matrix-(sink|host)-([0-9a-f]+)(?:-(\d+))?$")
BASIC = ("CPU", "GPU", "memory", "object_store_memory")


@contextmanager
def connected(address: str, token_env: dict[str, str], timeout: float = 120.0) -> Iterator[None]:
    """A Ray connection to ``address`` for this command only (token from the cluster info).

    A head whose GCS port is open may not take drivers yet (its raylet still registering),
    so joining is tried again until ``timeout``.
    """
    import logging
    import time

    import ray

    from matrix_core._private.clusters import use_auth

    use_auth(token_env)
    deadline = time.monotonic() + timeout
    while True:
        try:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
            break
        except (ConnectionError, RuntimeError, ValueError) as exc:
            ray.shutdown()
            if time.monotonic() > deadline:
                why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise MatrixError(f"cannot join the cluster at {address} (tried for {timeout:.0f}s): {why}") from None
            time.sleep(2.0)
    try:
        yield
    finally:
        ray.shutdown()


def alive_nodes() -> set[str]:
    import ray

    return {n["NodeID"] for n in ray.nodes() if n.get("Alive")}


def collect() -> dict[str, Any]:
    import ray

    if ray.util.client.ray.is_connected():
        return ray.get(ray.remote(num_cpus=0)(_collect).remote())
    return _collect()


def _collect() -> dict[str, Any]:
    import ray
    from ray._private import state

    available = state.available_resources_per_node()
    nodes = []
    for n in ray.nodes():
        total = n.get("Resources") or {}
        free = available.get(n["NodeID"], {}) if n.get("Alive") else {}
        nodes.append({
            "node_id": n["NodeID"], "alive": bool(n.get("Alive")), "ip": n.get("NodeManagerAddress"),
            "head": "node:__internal_head__" in total,
            "cpus": total.get("CPU", 0), "cpus_free": free.get("CPU", 0),
            "gpus": total.get("GPU", 0), "gpus_free": free.get("GPU", 0),
            "resources": {k: v for k, v in total.items() if k not in BASIC and not k.startswith("node:")},
        })
    runs: dict[str, dict[str, Any]] = {}
    for actor in state.actors().values():
        match = RUN_ACTOR.match(actor.get("Name") or "")
        if not match or actor.get("State") == "DEAD":
            continue
        run = runs.setdefault(match.group(2), {"run_id": match.group(2), "hosts": [], "sink": None})
        entry = {"name": actor["Name"], "state": actor.get("State"), "node_id": actor["Address"]["NodeID"]}
        if match.group(1) == "sink":
            run["sink"] = entry
        else:
            run["hosts"].append(entry)
    return {"nodes": nodes, "serve": _serve_apps(), "runs": sorted(runs.values(), key=lambda r: r["run_id"])}


def _serve_apps() -> list[dict[str, Any]]:
    import ray

    try:
        ray.get_actor("SERVE_CONTROLLER_ACTOR", namespace="serve")
    except ValueError:
        return []  # Serve never started here: asking would start it
    from ray import serve

    try:
        status = serve.status()
    except Exception as exc:  # a controller that is restarting
        return [{"name": "?", "status": f"unknown ({type(exc).__name__})"}]
    return [{"name": name, "status": str(app.status.value if hasattr(app.status, "value") else app.status),
             "deployments": {d: str(getattr(s.status, "value", s.status)) for d, s in app.deployments.items()}}
            for name, app in status.applications.items()]


def render(info: dict[str, Any], jobs: list[dict[str, Any]], live: dict[str, Any] | None, problem: str | None) -> str:
    lines = [f"cluster {info['name']} ({info['executor']}), head {info.get('address') or 'not up'}"]
    for job in jobs:
        lines.append(f"  {job['role']:<7} {job['id']:<14} {job['state']}")
    if live is None:
        lines.append(f"  not reachable: {problem}")
        return "\n".join(lines)
    alive = [n for n in live["nodes"] if n["alive"]]
    used = lambda key: sum(n[key] - n[key + "_free"] for n in alive)  # noqa: E731
    lines.append(
        f"nodes: {len(alive)} alive ({len(live['nodes']) - len(alive)} dead); "
        f"CPUs {used('cpus'):g} used / {sum(n['cpus'] for n in alive):g}; GPUs {used('gpus'):g} used / {sum(n['gpus'] for n in alive):g}"
    )
    for n in live["nodes"]:
        extra = " ".join(f"{k}={v:g}" for k, v in sorted(n["resources"].items()))
        lines.append(
            f"  {n['node_id'][:12]} {n['ip']:<15} {'head' if n['head'] else 'worker':<6} {'alive' if n['alive'] else 'dead':<5} "
            f"CPU {n['cpus'] - n['cpus_free']:g}/{n['cpus']:g} GPU {n['gpus'] - n['gpus_free']:g}/{n['gpus']:g} {extra}".rstrip()
        )
    lines.append("serve applications: " + (", ".join(f"{a['name']} ({a['status']})" for a in live["serve"]) or "none"))
    lines.append(f"matrix runs: {len(live['runs']) or 'none'}")
    for run in live["runs"]:
        nodes = sorted({h["node_id"][:12] for h in run["hosts"]})
        lines.append(f"  {run['run_id']}: {len(run['hosts'])} agent hosts on {len(nodes)} node(s) {', '.join(nodes)}")
    return "\n".join(lines)
