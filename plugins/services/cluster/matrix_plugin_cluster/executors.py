"""Where nodes run: processes on this machine (``--local``) or Slurm jobs through submitit.

Both run the same :class:`RayNode`; an executor only starts it, says whether it died, and
ends it. Records of what was started go into the cluster info file.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from matrix_core.errors import ConfigError

from .node import RayNode, kill_tree, port_open
from .state import cluster_dir, log_tail

SLURM_OPTIONS = ("partition", "account", "qos", "time", "gpus_per_node", "cpus_per_task", "mem")
PASSED_THROUGH = tuple(o for o in SLURM_OPTIONS if o != "time")  # --time has its own option with a default
SACCT_EVERY_S = 5.0
FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED"}


def node_spec(info: dict[str, Any], role: str) -> dict[str, Any]:
    """The RayNode arguments for ``role`` from the options stored at start."""
    opts = info["options"]
    spec: dict[str, Any] = {"cluster_dir": str(cluster_dir(info["name"])), "role": role, "port": info["port"],
                            "dashboard": bool(opts.get("dashboard")), "head_wait_s": float(opts["timeout"])}
    if role == "head":
        spec.update(num_cpus=opts.get("head_num_cpus"), num_gpus=opts.get("head_num_gpus"), resources=opts.get("head_resources") or {})
    else:
        spec.update(num_cpus=opts.get("num_cpus"), num_gpus=opts.get("num_gpus"), resources=opts.get("resources") or {})
    return spec


class LocalExecutor:
    """Head and workers as process groups on this machine, each with its own ports and temp dir."""

    name = "local"

    @staticmethod
    def check() -> None:
        pass

    @staticmethod
    def pick_port() -> int:
        import socket

        for _ in range(50):  # the head needs PORT and PORT+1 (Ray Client server)
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if port < 65000 and not port_open("127.0.0.1", port + 1):
                return port
        raise ConfigError("no free pair of ports on 127.0.0.1 for the head")

    def _spawn(self, info: dict[str, Any], spec: dict[str, Any], label: str, index: int) -> dict[str, Any]:
        root = cluster_dir(info["name"])
        (root / "logs").mkdir(exist_ok=True, mode=0o700)
        log = root / "logs" / f"{label}.log"
        temp = tempfile.mkdtemp(prefix="mxc", dir="/tmp")  # short: AF_UNIX socket paths live under it
        spec = {**spec, "temp_dir": temp}
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "matrix_plugin_cluster.node", json.dumps(spec), str(index)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")},
                start_new_session=True,  # its own process group: stop ends exactly this node
            )
        return {"label": label, "index": index, "pid": proc.pid, "temp_dir": temp, "log": str(log)}

    def start_head(self, info: dict[str, Any]) -> dict[str, Any]:
        return self._spawn(info, node_spec(info, "head"), "head", 0)

    def add_workers(self, info: dict[str, Any], indices: list[int]) -> list[dict[str, Any]]:
        return [self._spawn(info, node_spec(info, "worker"), f"worker-{i}", i) for i in indices]

    def problem(self, record: dict[str, Any]) -> str | None:
        """Why the node is gone (with its log tail), or None while it runs."""
        import psutil

        try:
            proc = psutil.Process(record["pid"])
            if proc.status() != psutil.STATUS_ZOMBIE:
                return None
        except psutil.NoSuchProcess:
            pass
        return f"{record['label']} (pid {record['pid']}) exited; last lines of {record['log']}:\n{log_tail(record['log'])}"

    def states(self, info: dict[str, Any]) -> list[dict[str, Any]]:
        records = [info["head"], *info["workers"]] if info.get("head") else info["workers"]
        return [{"role": r["label"].split("-")[0], "id": f"pid {r['pid']}", "state": "RUNNING" if self.problem(r) is None else "EXITED"}
                for r in records]

    def stop(self, info: dict[str, Any]) -> list[str]:
        records = [r for r in [*info["workers"], info.get("head")] if r]
        for r in records:  # all at once: each node shuts down in parallel
            try:
                os.killpg(r["pid"], signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        for r in records:
            kill_tree(r["pid"], r["temp_dir"])
            shutil.rmtree(r["temp_dir"], ignore_errors=True)
        return [f"pid {r['pid']}" for r in records]


def slurm_minutes(value: str) -> int:
    """Slurm's time formats (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS) in whole minutes:
    submitit takes minutes, and derives from them when a USR2 means "time limit" rather than "preempted"."""
    try:
        days, _, rest = value.rpartition("-") if "-" in value else ("0", "", value)
        parts = [int(p) for p in rest.split(":")]
        if "-" in value:  # D-HH[:MM[:SS]]
            hours, minutes, seconds = (parts + [0, 0])[:3]
        else:  # MM | MM:SS | HH:MM:SS
            hours, minutes, seconds = {1: (0, parts[0], 0), 2: (0, *parts), 3: tuple(parts)}[len(parts)]
        total = int(days) * 1440 + hours * 60 + minutes + (1 if seconds else 0)
    except (ValueError, KeyError):
        total = 0
    if total <= 0:
        raise ConfigError(f"--time {value!r}: give minutes or D-HH:MM:SS, e.g. --time 1440 or --time 1-00:00:00")
    return total


def parse_sbatch_lines(lines: list[str]) -> dict[str, Any]:
    """``--sbatch '--constraint=volta'`` (or ``'#SBATCH --exclusive'``) -> submitit's additional_parameters."""
    params: dict[str, Any] = {}
    for line in lines:
        for token in shlex.split(line.removeprefix("#SBATCH").strip()):
            if not token.startswith("--"):
                raise ConfigError(f"--sbatch {line!r}: give long options, e.g. --sbatch '--constraint=volta'")
            key, _, value = token[2:].partition("=")
            params[key] = value if value else True
    return params


class SlurmExecutor:
    """A head job and worker job arrays through submitit; workers requeue on preemption/time limit."""

    name = "slurm"

    def __init__(self) -> None:
        self._seen: dict[str, tuple[float, str]] = {}

    @staticmethod
    def check() -> None:
        if shutil.which("sbatch") is None:
            raise ConfigError("Slurm is not available here (no `sbatch` on PATH); use --local to start the cluster on this machine")

    @staticmethod
    def pick_port() -> int:
        return 6379

    def _executor(self, info: dict[str, Any], role: str):
        import submitit

        opts = info["options"]
        executor = submitit.SlurmExecutor(folder=cluster_dir(info["name"]) / "slurm", max_num_timeout=int(opts.get("max_requeues", 30)))
        params: dict[str, Any] = {k: opts[k] for k in SLURM_OPTIONS if opts.get(k) is not None}
        params.update(job_name=f"matrix-{info['name']}-{role}", nodes=1, ntasks_per_node=1, signal_delay_s=120,
                      additional_parameters=parse_sbatch_lines(opts.get("sbatch") or []))
        executor.update_parameters(**params)
        return executor

    def start_head(self, info: dict[str, Any]) -> dict[str, Any]:
        job = self._executor(info, "head").submit(RayNode(**node_spec(info, "head")))
        return {"label": "head", "job_id": job.job_id, "log": str(job.paths.stderr), "stdout": str(job.paths.stdout)}

    def add_workers(self, info: dict[str, Any], indices: list[int]) -> list[dict[str, Any]]:
        executor = self._executor(info, "worker")
        executor.update_parameters(array_parallelism=len(indices))
        jobs = executor.map_array(RayNode(**node_spec(info, "worker")), indices)
        return [{"label": f"worker-{i}", "index": i, "job_id": j.job_id, "log": str(j.paths.stderr), "stdout": str(j.paths.stdout)}
                for i, j in zip(indices, jobs)]

    @staticmethod
    def job_states(job_ids: list[str]) -> dict[str, str]:
        from submitit.slurm.slurm import SlurmInfoWatcher

        parents = sorted({j.split("_")[0] for j in job_ids})
        if not parents:
            return {}
        cmd = ["sacct", "-o", "JobID,State,NodeList", "--parsable2"] + [a for p in parents for a in ("-j", p)]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            return {j: f"UNKNOWN (sacct: {type(exc).__name__})" for j in job_ids}
        info = SlurmInfoWatcher().read_info(out)
        return {j: (info.get(j) or {}).get("State", "UNKNOWN").split(" ")[0] for j in job_ids}

    def problem(self, record: dict[str, Any]) -> str | None:
        import time

        # sacct loads the accounting database: ask at most every few seconds while waiting.
        cached = self._seen.get(record["job_id"])
        if cached and time.monotonic() - cached[0] < SACCT_EVERY_S:
            state = cached[1]
        else:
            state = self.job_states([record["job_id"]])[record["job_id"]]
            self._seen[record["job_id"]] = (time.monotonic(), state)
        if state not in FINISHED:
            return None
        tail = log_tail(record["log"]) if Path(record["log"]).exists() and Path(record["log"]).stat().st_size else log_tail(record["stdout"])
        return f"{record['label']} (Slurm job {record['job_id']}) is {state}; last lines of its log:\n{tail}"

    def states(self, info: dict[str, Any]) -> list[dict[str, Any]]:
        records = [r for r in [info.get("head"), *info["workers"]] if r]
        states = self.job_states([r["job_id"] for r in records])
        return [{"role": r["label"].split("-")[0], "id": r["job_id"], "state": states[r["job_id"]]} for r in records]

    def stop(self, info: dict[str, Any]) -> list[str]:
        ids = sorted({r["job_id"].split("_")[0] for r in [info.get("head"), *info["workers"]] if r})
        if ids:
            subprocess.run(["scancel", *ids], check=False, timeout=60)
        return [f"Slurm job {i}" for i in ids]


def executor_for(name: str):
    return {"local": LocalExecutor, "slurm": SlurmExecutor}[name]()
