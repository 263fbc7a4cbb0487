"""One Ray node of a cluster: what a Slurm job (through submitit) or a local process runs.

The node reads the cluster's token from its info file (never from its arguments, which a
Slurm job pickles to disk and `ps` shows), runs ``ray start --block`` as a child and ends
that child, and everything under its own temp dir, when it is itself ended. The head writes
``head.json`` (its address) once its GCS port answers; workers wait for that file, so a
requeued head or worker finds the current head.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matrix_core._private.clusters import INFO_FILE, auth_env

HEAD_FILE = "head.json"
CLIENT_PORT_OFFSET = 1  # the Ray Client server listens next to the GCS port on a Slurm head


def write_private(path: Path, data: dict[str, Any]) -> None:
    """Atomic write of a JSON file readable by its owner only."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def node_ip() -> str:
    from ray._private.services import get_node_ip_address

    return get_node_ip_address()


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def kill_tree(pgid: int | None, temp_dir: str | None, grace_s: float = 30.0) -> None:
    """End a node: SIGTERM its process group, SIGKILL what is left, then whatever still names its temp dir."""
    import psutil

    if pgid:
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and _group_alive(pgid):
            time.sleep(0.2)
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if temp_dir:  # Ray daemons that left the group still carry the node's temp dir in their command line
        for p in psutil.process_iter(["cmdline"]):
            try:
                if p.pid != os.getpid() and temp_dir in " ".join(p.info["cmdline"] or []):
                    p.kill()
            except psutil.Error:
                pass


class _Relay(threading.Thread):
    """Copies ray start's output to ours, noting whether the node came up or missed its registration."""

    def __init__(self, proc: subprocess.Popen):
        super().__init__(daemon=True)
        self.proc, self.up, self.missed_registration = proc, False, False
        self.start()

    def run(self) -> None:
        for line in iter(self.proc.stdout.readline, b""):
            sys.stdout.buffer.write(line)
            sys.stdout.flush()
            self.up = self.up or b"Ray runtime started" in line
            self.missed_registration = self.missed_registration or b"timed out during startup" in line

    def finish(self) -> None:
        self.join(10)


def _end(proc: subprocess.Popen, temp_dir: str, grace_s: float = 20.0) -> None:
    proc.terminate()  # ray start --block shuts its daemons down on SIGTERM
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
    kill_tree(None, temp_dir)


def _group_alive(pgid: int) -> bool:
    import psutil

    for p in psutil.process_iter(["status"]):
        try:
            if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.Error):
            pass
    return False


@dataclass
class RayNode:
    """``RayNode(cluster_dir, "head")()`` or ``RayNode(cluster_dir, "worker")(index)``.

    ``resources`` keys may contain ``{i}``, replaced by the worker's index, so one Slurm array
    gives every node its own logical resource (``matrix_node_{i}``).
    """

    cluster_dir: str
    role: str
    port: int = 6379
    node_ip: str | None = None
    num_cpus: int | None = None
    num_gpus: int | None = None
    resources: dict[str, float] = field(default_factory=dict)
    temp_dir: str | None = None
    dashboard: bool = False
    head_wait_s: float = 600.0

    def __call__(self, index: int = 0) -> int:
        root = Path(self.cluster_dir)
        info = json.loads((root / INFO_FILE).read_text())
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
        env.update(auth_env(info))
        ip = self.node_ip or node_ip()
        # Short and per node: Ray's AF_UNIX socket paths live under it (108-byte limit).
        temp = self.temp_dir or tempfile.mkdtemp(prefix="mxc", dir="/tmp")
        os.makedirs(temp, exist_ok=True)
        cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", f"--temp-dir={temp}",
               "--disable-usage-stats", f"--node-ip-address={ip}"]
        if self.role == "head":
            cmd += ["--head", f"--port={self.port}", f"--include-dashboard={str(self.dashboard).lower()}",
                    f"--ray-client-server-port={self.port + CLIENT_PORT_OFFSET}"]
        else:
            cmd += [f"--address={self._wait_for_head(root)}"]
        if self.num_cpus is not None:
            cmd.append(f"--num-cpus={self.num_cpus}")
        if self.num_gpus is not None:
            cmd.append(f"--num-gpus={self.num_gpus}")
        resources = {k.replace("{i}", str(index)): v for k, v in self.resources.items()}
        if resources:
            cmd.append(f"--resources={json.dumps(resources)}")
        print(f"matrix cluster: {self.role} {index} on {socket.gethostname()} ({ip}): {' '.join(cmd)}", flush=True)
        deadline = time.monotonic() + self.head_wait_s
        while True:
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # our process group
            output = _Relay(proc)
            try:
                if self.role == "head":
                    self._announce(root, proc, output, ip, temp)
                rc = proc.wait()
            finally:
                _end(proc, temp)
            output.finish()
            # Ray gives a raylet 30 s to register; a busy GCS (many nodes joining, a loaded host)
            # can miss that. Only such a start is tried again (the head on the same port, before
            # it announced itself); a node that was up and died, or a bad option, is not.
            if output.up or not output.missed_registration or time.monotonic() > deadline:
                return rc
            print(f"matrix cluster: ray start exited with {rc}: the node missed Ray's registration window; trying again", flush=True)
            time.sleep(2.0)

    def _announce(self, root: Path, proc: subprocess.Popen, output: "_Relay", ip: str, temp: str) -> None:
        """Publish the head's address once it is up (its raylet registered, not just its GCS port open)."""
        deadline = time.monotonic() + self.head_wait_s
        while not (output.up and port_open(ip, self.port)):
            if proc.poll() is not None:
                return  # failed while starting: the caller may try again
            if time.monotonic() > deadline:
                raise SystemExit(f"the head at {ip}:{self.port} did not come up within {self.head_wait_s:.0f}s")
            time.sleep(0.5)
        write_private(root / HEAD_FILE, {
            "address": f"{ip}:{self.port}", "client_address": f"ray://{ip}:{self.port + CLIENT_PORT_OFFSET}",
            "host": socket.gethostname(), "pid": os.getpid(), "temp_dir": temp,
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"), "time": time.time(),
        })

    def _wait_for_head(self, root: Path) -> str:
        deadline = time.monotonic() + self.head_wait_s
        while True:
            try:
                return json.loads((root / HEAD_FILE).read_text())["address"]
            except (FileNotFoundError, ValueError, KeyError):
                if time.monotonic() > deadline:
                    raise SystemExit(f"no head address in {root / HEAD_FILE} after {self.head_wait_s:.0f}s") from None
                time.sleep(1.0)

    def checkpoint(self, *args: Any, **kwargs: Any):
        """Preempted or out of time on Slurm: submitit requeues the same node (it rejoins the head)."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def main() -> None:
    """``python -m matrix_plugin_cluster.node '{"cluster_dir": ..., "role": ...}' [INDEX]`` (the local executor)."""
    # SIGTERM (stop) must run the finally that ends ray start and its daemons.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    node = RayNode(**json.loads(sys.argv[1]))
    sys.exit(node(int(sys.argv[2]) if len(sys.argv) > 2 else 0))


if __name__ == "__main__":
    main()
