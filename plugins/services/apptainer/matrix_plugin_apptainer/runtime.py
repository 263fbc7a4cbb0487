"""Apptainer (or SingularityCE) instances as sandboxes: ``runtime=apptainer``.

One instance per sandbox (``apptainer instance start``), commands run in it with
``apptainer exec instance://NAME`` and it is stopped on release (``instance stop``). The
sandbox's work dir is a host folder bound at ``/work``, so files survive between commands
and the host reads and writes them without entering the container. ``--contain``,
``--cleanenv`` and ``--network none`` keep the host's home, environment and network out;
``nv: true`` adds ``--nv`` for the host's NVIDIA GPUs.
"""
from __future__ import annotations

import math
import os
import re
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

from matrix_core import ConfigError, MatrixError
from matrix_core.sandbox import ExecResult, ToolRuntime
from matrix_plugin_sandbox import WorkRoot, exec_request, read_inside, run_bounded, write_inside

INSTALL_HINT = "install apptainer (https://apptainer.org/docs/admin/main/installation.html) or SingularityCE"
IMAGE_SCHEMES = ("docker://", "library://", "oras://", "shub://", "docker-archive://", "instance://")
MB = 1 << 20

DEFAULTS: dict[str, Any] = {
    "binary": None,           # apptainer, else singularity
    "image": None,
    "nv": False,
    "binds": [],              # "host:container[:ro]"
    "network": "none",        # none: no network at all; host: the host's (not a sandbox then); else an apptainer network
    "contain": True,
    "writable_tmpfs": True,
    "temp_root": None,
    "timeout_s": 30.0,
    "max_timeout_s": 600.0,
    "start_timeout_s": 120.0,
    "memory_mb": 2048,
    "max_file_mb": 256,
    "max_open_files": 1024,
    "max_output_bytes": 65536,
    "max_read_bytes": 16 * MB,
    "extra_start_args": [],
    "env": {},
}


def _settings(cfg: Mapping[str, Any]) -> dict[str, Any]:
    s = {**DEFAULTS, **{k: v for k, v in cfg.items() if v is not None or k not in DEFAULTS}}
    try:
        for key in ("memory_mb", "max_file_mb", "max_open_files", "max_output_bytes", "max_read_bytes"):
            s[key] = int(s[key])
        for key in ("timeout_s", "max_timeout_s", "start_timeout_s"):
            s[key] = float(s[key])
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"runtime (apptainer): {exc}") from None
    for bind in s["binds"] or []:
        parts = str(bind).split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("/") or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise ConfigError(f"runtime.binds: {bind!r} is not HOST:CONTAINER[:ro|rw] (CONTAINER absolute)")
        if parts[1] == "/work" or parts[1].startswith("/work/"):
            raise ConfigError(f"runtime.binds: {bind!r} binds over /work, the sandbox's own work dir")
    return s


class ApptainerRuntime(ToolRuntime):
    def __init__(self, config: Mapping[str, Any]):
        super().__init__(config)
        self.s = _settings(config)
        self.root = WorkRoot(self.s["temp_root"], "apptainer")
        self.binary: str | None = None
        self.boxes: dict[str, dict[str, Any]] = {}

    # --- the commands -------------------------------------------------------------------
    def instance_name(self, sandbox_id: str) -> str:
        # Instance names are per user and host: the owner folder's name keeps runs apart.
        return re.sub(r"[^A-Za-z0-9_.-]", "-", f"matrix-{self.root.mine.name}-{sandbox_id}")

    def start_argv(self, name: str, work: Path) -> list[str]:
        s = self.s
        argv = [self.binary or "apptainer", "instance", "start"]
        if s["contain"]:
            argv += ["--contain", "--cleanenv"]
        if s["writable_tmpfs"]:
            argv.append("--writable-tmpfs")
        if s["network"] and s["network"] != "host":
            argv += ["--net", "--network", str(s["network"])]
        if s["nv"]:
            argv.append("--nv")
        argv += ["--bind", f"{work}:/work"]
        for bind in s["binds"] or []:
            argv += ["--bind", str(bind)]
        return argv + [str(a) for a in s["extra_start_args"] or []] + [str(s["image"]), name]

    def exec_argv(self, name: str, command: Sequence[str], env: Mapping[str, str], cwd: str, timeout_s: float) -> list[str]:
        s = self.s
        # rlimits set here pass through apptainer's exec into the container process.
        limits = ["prlimit", f"--as={s['memory_mb'] * MB}", f"--fsize={s['max_file_mb'] * MB}",
                  f"--nofile={s['max_open_files']}", f"--cpu={math.ceil(timeout_s) + 1}", "--core=0", "--"]
        argv = [*limits, self.binary or "apptainer", "exec", "--pwd", cwd]
        if s["contain"]:
            argv.append("--cleanenv")
        for key, value in {"HOME": "/work", **(s["env"] or {}), **env}.items():
            argv += ["--env", f"{key}={value}"]
        return argv + [f"instance://{name}", *command]

    def stop_argv(self, name: str) -> list[str]:
        return [self.binary or "apptainer", "instance", "stop", "--signal", "SIGKILL", name]

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        names = [self.s["binary"]] if self.s["binary"] else ["apptainer", "singularity"]
        self.binary = next((found for n in names if (found := shutil.which(str(n)))), None)
        if self.binary is None:
            raise MatrixError(f"runtime=apptainer needs {' or '.join(map(str, names))} on PATH, and it is not installed: {INSTALL_HINT}")
        if shutil.which("prlimit") is None:
            raise MatrixError("runtime=apptainer needs `prlimit` (util-linux), which is not on PATH")
        image = self.s["image"]
        if not image:
            raise ConfigError("runtime.image is not set: give a .sif file or an image URI (runtime.image=docker://python:3.12-slim)")
        if not str(image).startswith(IMAGE_SCHEMES) and not os.path.exists(str(image)):
            raise ConfigError(f"runtime.image: {image} is not a file (nor a docker:// / library:// / oras:// URI)")
        self.root.start()

    async def _run(self, argv: list[str], timeout_s: float, what: str) -> ExecResult:
        result = await run_bounded(argv, stdin=None, env=None, timeout_s=timeout_s, max_output_bytes=self.s["max_output_bytes"])
        if not result.ok:
            why = (result.stderr.strip().splitlines() or [result.killed or f"exit {result.exit_code}"])[-1]
            raise MatrixError(f"apptainer {what} failed: {why}")
        return result

    async def create(self, sandbox_id: str) -> dict[str, Any]:
        work = self.root.create(sandbox_id, None)
        name = self.instance_name(sandbox_id)
        try:
            await self._run(self.start_argv(name, work), self.s["start_timeout_s"], f"instance start {name}")
        except MatrixError:
            self.root.remove(sandbox_id)
            raise
        self.boxes[sandbox_id] = {"work": work, "name": name, "running": set()}
        return {"runtime": "apptainer", "workdir": "/work", "instance": name, "image": str(self.s["image"]), "nv": bool(self.s["nv"])}

    async def destroy(self, sandbox_id: str) -> None:
        box = self.boxes.pop(sandbox_id, None)
        if box is None:
            return
        for proc in list(box["running"]):
            try:
                os.killpg(proc.pid, 9)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            await self._run(self.stop_argv(box["name"]), 60, f"instance stop {box['name']}")
        except MatrixError:
            pass  # already gone; its processes die with the instance either way
        self.root.remove(sandbox_id)

    async def close(self) -> None:
        for sandbox_id in list(self.boxes):
            await self.destroy(sandbox_id)
        self.root.close()

    def census(self) -> dict[str, int]:
        return {"processes": sum(len(b["running"]) for b in self.boxes.values()), "work_dirs": self.root.count()}

    # --- use ----------------------------------------------------------------------------
    def _box(self, sandbox_id: str) -> dict[str, Any]:
        box = self.boxes.get(sandbox_id)
        if box is None:
            raise MatrixError(f"no sandbox {sandbox_id} (it was released)")
        return box

    async def exec(self, sandbox_id: str, command: Sequence[str] | str, *, stdin: bytes | None = None,
                   env: Mapping[str, str] | None = None, cwd: str | None = None, timeout_s: float | None = None) -> ExecResult:
        box = self._box(sandbox_id)
        command, inner_cwd, timeout = exec_request(command, cwd, timeout_s, self.s)

        async def restart() -> None:
            # A command that outlived its limit may have left processes in the instance: a
            # fresh instance over the same work dir ends them and keeps the files.
            await run_bounded(self.stop_argv(box["name"]), stdin=None, env=None, timeout_s=60, max_output_bytes=4096)
            await self._run(self.start_argv(box["name"], box["work"]), self.s["start_timeout_s"], f"instance restart {box['name']}")

        return await run_bounded(
            self.exec_argv(box["name"], list(command), {str(k): str(v) for k, v in (env or {}).items()}, inner_cwd, timeout),
            stdin=stdin, env=None, timeout_s=timeout, max_output_bytes=self.s["max_output_bytes"], on_kill=restart,
            running=box["running"],
        )

    async def read_file(self, sandbox_id: str, path: str) -> bytes:
        return read_inside(self._box(sandbox_id)["work"], path, self.s["max_read_bytes"])

    async def write_file(self, sandbox_id: str, path: str, data: bytes) -> None:
        write_inside(self._box(sandbox_id)["work"], path, data, None)
