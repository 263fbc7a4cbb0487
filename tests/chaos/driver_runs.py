"""Helpers for tests that SIGKILL a real `matrix run` driver: start it, wait on observed
progress (never on a clock), find what a dead run left by its recorded ids."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from matrix_core._private import leftovers

PATIENCE_S = 600  # a bound, not a measurement: loaded CI boxes start Ray slowly


def start(cmd: list[str]) -> subprocess.Popen:
    """The run writes to a file, not a pipe: nobody reads while it runs, and a full pipe would block it."""
    log = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    proc.log = log
    return proc


def output(proc: subprocess.Popen) -> str:
    proc.log.seek(0)
    return proc.log.read()


def finish(proc: subprocess.Popen) -> str:
    """Waits (bounded) for the run to end; its output."""
    proc.wait(PATIENCE_S)
    return output(proc)


def wait_until(proc: subprocess.Popen, ready, what: str) -> None:
    """Polls ``ready()`` until true; fails with the run's output if it ends first."""
    deadline = time.monotonic() + PATIENCE_S
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (exit {proc.returncode}) before {what}:\n{output(proc)[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {PATIENCE_S}s")
        time.sleep(0.05)


def kill_driver(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def lines(path: Path) -> list[bytes]:
    try:
        return [line for line in path.read_bytes().splitlines() if line.endswith(b"}")]
    except FileNotFoundError:
        return []


def written_ids(out: Path) -> set[str]:
    ids = set()
    for line in lines(out):
        try:
            ids.add(json.loads(line)["task_id"])
        except ValueError:  # a torn last line
            pass
    return ids


def checkpoints(out: Path) -> dict[str, dict]:
    """The newest checkpoint per task in the sidecar file."""
    latest: dict[str, dict] = {}
    for line in lines(Path(str(out) + ".checkpoints.jsonl")):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry["steps"] >= latest.get(entry["task_id"], {}).get("steps", -1):
            latest[entry["task_id"]] = entry
    return latest


def ray_ids(out: Path, proc: subprocess.Popen) -> dict | None:
    """The Ray node id and session dir this run recorded next to its output, once it has
    (until then the file may still be the dead run's)."""
    try:
        state = json.loads(Path(str(out) + leftovers.SUFFIX).read_text())
    except (OSError, ValueError):
        return None
    return state.get("ray") if state.get("pid") == proc.pid else None


def processes_of(ids: dict) -> list[int]:
    """Live processes carrying that run's Ray ids."""
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != os.getpid() and leftovers._belongs(int(entry.name), ids["node_id"], ids["session_dir"]):
            try:
                state = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z":
                pids.append(int(entry.name))
    return pids


def end_processes_of(ids: dict) -> None:
    """Cleanup after a failed test: only the processes of the run the test itself started."""
    for pid in processes_of(ids):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
