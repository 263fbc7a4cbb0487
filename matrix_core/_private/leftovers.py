"""What a killed run leaves behind, reaped by the next run on the same output.

A driver killed with SIGKILL cannot stop the local Ray it started; Ray's helper processes
(its dashboard and runtime-env agents, sometimes workers) outlive it. At start a run writes
its own ids next to the output (``OUTPUT.run.json``: driver pid and start time, the Ray node
id and session dir it started); the next run on that output, finding that driver dead, ends
exactly the processes carrying those ids: ``RAY_NODE_ID`` in their environment or the
session dir on their command line, owned by this user. Never by name: the machine may run
other users' and other runs' Ray.
"""
from __future__ import annotations

import json
import logging
import os
import select
import signal
from pathlib import Path
from typing import Any

log = logging.getLogger("matrix.driver")

SUFFIX = ".run.json"
WAIT_S = 30.0


def state_path(output: str | None) -> Path | None:
    return Path(os.path.abspath(os.path.expanduser(output + SUFFIX))) if output else None


def record(output: str | None, run_id: str, started_ray: bool) -> None:
    """Writes this run's ids, unless a live run already holds this output."""
    path = state_path(output)
    if path is None or _holder_alive(_read(path)):
        return
    state: dict[str, Any] = {"run_id": run_id, "pid": os.getpid(), "pid_start": _start_time(os.getpid()), "uid": os.getuid()}
    if started_ray:
        import ray

        node = ray._private.worker.global_worker.node
        state["ray"] = {"node_id": ray.get_runtime_context().get_node_id(), "session_dir": node.get_session_dir_path()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, path)
    except OSError as exc:  # an unusable output path is the sink's to report, in one line
        log.debug("cannot record the run state in %s: %s", path, exc)


def forget(output: str | None, run_id: str) -> None:
    """Removes this run's state at its end (not another run's)."""
    path = state_path(output)
    if path is not None and _read(path).get("run_id") == run_id:
        _unlink(path)


def reap(output: str | None) -> list[int]:
    """Ends what a dead earlier run on this output left; returns the pids it ended."""
    path = state_path(output)
    state = _read(path) if path is not None else {}
    if not state or _holder_alive(state):
        return []
    ray_ids = state.get("ray") or {}
    ended = _end_processes(ray_ids.get("node_id"), ray_ids.get("session_dir"), state.get("uid")) if ray_ids else []
    if ended:
        log.warning("ended %d process(es) left by the killed run %s (Ray session %s): pids %s",
                    len(ended), state.get("run_id"), ray_ids.get("session_dir"), ", ".join(map(str, ended)))
    _unlink(path)
    return ended


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _read(path: Path) -> dict[str, Any]:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot: with the pid, it names one process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _holder_alive(state: dict[str, Any]) -> bool:
    pid = state.get("pid")
    return isinstance(pid, int) and pid != os.getpid() and _start_time(pid) is not None and _start_time(pid) == state.get("pid_start")


def _belongs(pid: int, node_id: str | None, session_dir: str | None) -> bool:
    proc = Path(f"/proc/{pid}")
    try:
        if node_id and f"RAY_NODE_ID={node_id}".encode() in (proc / "environ").read_bytes().split(b"\0"):
            return True
        return bool(session_dir) and (session_dir + "/").encode() in (proc / "cmdline").read_bytes()
    except OSError:  # gone, or not ours to read
        return False


def _end_processes(node_id: str | None, session_dir: str | None, uid: int | None) -> list[int]:
    if not (node_id or session_dir) or uid != os.getuid() or not os.path.isdir("/proc"):
        return []
    pidfds: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        try:
            if entry.stat().st_uid != uid:
                continue
            fd = os.pidfd_open(pid)  # from here on the pid cannot be reused under us
        except OSError:
            continue
        if _belongs(pid, node_id, session_dir):
            try:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
                pidfds[pid] = fd
                continue
            except OSError:
                pass
        os.close(fd)
    poller = select.poll()
    for fd in pidfds.values():
        poller.register(fd, select.POLLIN)  # readable once the process has exited
    waiting = set(pidfds.values())
    while waiting:
        ready = poller.poll(WAIT_S * 1000)
        if not ready:
            log.warning("%d process(es) of the killed run did not exit within %.0fs", len(waiting), WAIT_S)
            break
        for fd, _ in ready:
            poller.unregister(fd)
            waiting.discard(fd)
    for fd in pidfds.values():
        os.close(fd)
    return sorted(pidfds)
