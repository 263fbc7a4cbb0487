"""``matrix cluster start | add-workers | status | stop | list``."""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Callable

import click

from matrix_core._private.clusters import auth_env, known
from matrix_core.errors import ConfigError, MatrixError

from . import state
from .executors import PASSED_THROUGH, executor_for, slurm_minutes
from .live import alive_nodes, collect, connected, render
from .node import HEAD_FILE

POLL_S = 0.5


def _json_option(value: str | None, what: str) -> dict[str, float]:
    if not value:
        return {}
    try:
        parsed = json.loads(value)
        if not isinstance(parsed, dict) or not all(isinstance(v, (int, float)) for v in parsed.values()):
            raise ValueError("expected an object of numbers")
    except ValueError as exc:
        raise ConfigError(f"{what} {value!r} is not a JSON object of numbers ({exc}); e.g. '{{\"matrix_node_{{i}}\": 1}}'") from None
    return parsed


def _wait(what: str, timeout: float, ready: Callable[[], Any], problem: Callable[[], str | None]) -> Any:
    """Poll ``ready`` until it returns something truthy; a ``problem`` or the timeout ends the wait."""
    deadline = time.monotonic() + timeout
    while True:
        result = ready()
        if result:
            return result
        failure = problem()
        if failure:
            raise MatrixError(failure)
        if time.monotonic() > deadline:
            raise MatrixError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(POLL_S)


def _driver_address(info: dict[str, Any]) -> str:
    return info.get("driver_address") or info["address"]


def _wait_for_nodes(info: dict[str, Any], executor, expected: int, records: list[dict[str, Any]], known: frozenset[str] = frozenset()) -> None:
    """Wait for ``expected`` alive nodes that are not in ``known`` (a node dying meanwhile does not count)."""
    def problem() -> str | None:
        for r in records:
            if (why := executor.problem(r)) is not None:
                return why
        return None

    def enough() -> bool:
        try:
            return len(alive_nodes() - known) >= expected
        except Exception:  # the GCS is busy: ask again
            return False

    with connected(_driver_address(info), auth_env(info), float(info["options"]["timeout"])):
        _wait(f"{expected} new alive Ray node(s) in cluster {info['name']!r}", float(info["options"]["timeout"]), enough, problem)


def _add(name: str, count: int, executor) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    with state.update(name) as info:
        first = int(info["next_worker"])
        indices = list(range(first, first + count))
        records = executor.add_workers(info, indices)
        info["workers"].extend(records)
        info["next_worker"] = first + count
    return info, records


@click.group("cluster")
def cluster_group() -> None:
    """Start, grow, inspect and stop a Ray cluster on Slurm (submitit) or on this machine (--local).

    Runs and services join it with --cluster NAME; its address and auth token are in
    $MATRIX_HOME/clusters/NAME/cluster.json (MATRIX_HOME defaults to ~/.matrix; owner-only).
    """


def _slurm_options(f):
    for opt in reversed(PASSED_THROUGH):
        f = click.option(f"--{opt.replace('_', '-')}", opt, default=None, help=f"Slurm {opt} (sbatch --{opt.replace('_', '-')}).")(f)
    return click.option("--sbatch", "sbatch", multiple=True, metavar="LINE",
                        help="Extra #SBATCH option, e.g. --sbatch '--constraint=volta' (repeatable).")(f)


@cluster_group.command("start")
@click.argument("name")
@click.option("--local", "local", is_flag=True, help="Head and workers as processes on this machine instead of Slurm jobs.")
@click.option("--workers", default=0, show_default=True, type=click.IntRange(0), help="Worker nodes to start with the head.")
@click.option("--num-cpus", type=click.IntRange(0), help="CPUs each worker offers Ray (default: what Ray detects).")
@click.option("--num-gpus", type=click.IntRange(0), help="GPUs each worker offers Ray (default: what Ray detects).")
@click.option("--resources", help="Logical resources of each worker, JSON; '{i}' in a key becomes the worker's index.")
@click.option("--head-num-cpus", type=click.IntRange(0), help="CPUs the head offers (0 keeps work off the head).")
@click.option("--head-num-gpus", type=click.IntRange(0), help="GPUs the head offers.")
@click.option("--head-resources", help="Logical resources of the head, JSON.")
@click.option("--port", type=click.IntRange(1, 65534), help="GCS port of the head (local: a free one; Slurm: 6379).")
@click.option("--dashboard/--no-dashboard", default=None, help="Ray dashboard on the head (default: on for Slurm, off locally).")
@click.option("--timeout", default=600.0, show_default=True, type=click.FloatRange(1), help="Seconds to wait for each node to come up.")
@click.option("--time", "time", default="1440", show_default=True, help="Slurm time limit of each job (minutes or D-HH:MM:SS); workers requeue when it ends.")
@click.option("--max-requeues", default=30, show_default=True, type=click.IntRange(0), help="Slurm: times a job may requeue after a time limit.")
@_slurm_options
def start_command(name: str, local: bool, workers: int, **opts: Any) -> None:
    """Start cluster NAME: a head, plus --workers N worker nodes."""
    executor = executor_for("local" if local else "slurm")
    executor.check()
    opts["time"] = slurm_minutes(opts["time"])
    opts["resources"] = _json_option(opts["resources"], "--resources")
    opts["head_resources"] = _json_option(opts["head_resources"], "--head-resources")
    if opts["dashboard"] is None:
        opts["dashboard"] = not local
    port = opts.pop("port") or executor.pick_port()
    info = state.create(name, executor.name, port=port, options={**opts, "sbatch": list(opts["sbatch"])})
    root = state.cluster_dir(name)
    try:
        with state.update(name) as info:
            info["head"] = executor.start_head(info)
        head = _wait(
            f"the head of cluster {name!r} to write {root / HEAD_FILE}", float(opts["timeout"]),
            lambda: _read_head(root), lambda: executor.problem(info["head"]),
        )
        with state.update(name) as info:
            info["address"] = head["address"]
            info["driver_address"] = head["address"] if local else head["client_address"]
        info, records = _add(name, workers, executor) if workers else (info, [])
        _wait_for_nodes(info, executor, 1 + workers, [info["head"], *records])
    except BaseException:
        # Nothing half-started stays behind, and the name is free again.
        executor.stop(state.load(name))
        state.remove(name)
        raise
    click.echo(f"cluster {name} started ({executor.name}): head {info['address']}, {workers} worker(s)\n"
               f"use it: matrix run WORKFLOW --cluster {name}   |   matrix cluster status {name}")


def _read_head(root) -> dict[str, Any] | None:
    try:
        return json.loads((root / HEAD_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None


@cluster_group.command("add-workers")
@click.argument("name")
@click.argument("count", type=click.IntRange(1))
@click.option("--no-wait", is_flag=True, help="Return once submitted (Slurm jobs may stay pending).")
def add_workers_command(name: str, count: int, no_wait: bool) -> None:
    """Add COUNT worker nodes to cluster NAME (same options as at start)."""
    info = state.require(name)
    executor = executor_for(info["executor"])
    executor.check()
    with connected(_driver_address(info), auth_env(info)):
        before = frozenset(alive_nodes())
    info, records = _add(name, count, executor)
    if not no_wait:
        _wait_for_nodes(info, executor, count, records, before)
    click.echo(f"cluster {name}: added {count} worker(s) ({', '.join(r['label'] for r in records)})")


@cluster_group.command("status")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--timeout", default=120.0, show_default=True, type=click.FloatRange(1), help="Seconds to wait for the cluster's answer.")
def status_command(name: str, as_json: bool, timeout: float) -> None:
    """Nodes, CPUs/GPUs used and free, Serve applications and Matrix runs of cluster NAME."""
    info = state.require(name)
    jobs = executor_for(info["executor"]).states(info)
    live, problem = None, "the head is not up yet"
    if info.get("address"):
        live, problem = _ask(info, timeout)
    if as_json:
        click.echo(json.dumps({"cluster": state.public(info), "jobs": jobs, "live": live, "problem": problem}, indent=2))
    else:
        click.echo(render(info, jobs, live, problem))
    if problem and problem.startswith("no answer"):
        sys.stdout.flush()
        os._exit(1)  # the connection attempt may still hang in its thread


def _ask(info: dict[str, Any], timeout: float) -> tuple[dict[str, Any] | None, str | None]:
    """What the cluster holds, or why not; a cluster that does not answer in time is reported as such."""
    import threading

    answer: dict[str, Any] = {"live": None, "problem": f"no answer from {_driver_address(info)} within {timeout:.0f}s"}

    def ask() -> None:
        try:
            with connected(_driver_address(info), auth_env(info)):
                answer.update(live=collect(), problem=None)
        except MatrixError as exc:
            answer["problem"] = str(exc)

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    thread.join(timeout)
    return answer["live"], answer["problem"]


@cluster_group.command("stop")
@click.argument("name")
def stop_command(name: str) -> None:
    """Stop cluster NAME: end its head and workers and forget it."""
    info = state.require(name)
    ended = executor_for(info["executor"]).stop(info)
    state.remove(name)
    click.echo(f"cluster {name} stopped ({', '.join(ended) or 'nothing was running'})")


@cluster_group.command("list")
def list_command() -> None:
    """Clusters known in $MATRIX_HOME."""
    names = known()
    if not names:
        click.echo("no clusters (start one: matrix cluster start NAME --local, or on Slurm)")
    for name in names:
        info = state.load(name)
        click.echo(f"{name:<16} {info['executor']:<6} head {info.get('address') or 'not up'}, {len(info['workers'])} worker(s) started")
