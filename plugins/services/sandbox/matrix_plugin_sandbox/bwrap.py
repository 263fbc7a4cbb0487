"""Bubblewrap sandboxes: no network, a read-only system, a private work dir, hard limits.

Every command is a fresh ``bwrap``: new mount, pid, network, ipc and uts namespaces, only
the system folders a shell or Python program needs (``/usr``, the ``/lib*`` and ``/bin``
links, a few files of ``/etc``, this interpreter's prefix), a private ``/tmp`` tmpfs and the
sandbox's work dir at ``/work``. What a task keeps between calls is its work dir; when the
command ends, its pid namespace ends and every process it left goes with it.

Limits are rlimits set inside the sandbox (``prlimit``): address space, processes, file
size, open files, CPU time. ``RLIMIT_NPROC`` counts per uid and never binds root, so as
root each sandbox runs as its own unprivileged uid (``uid_base`` + slot, via ``setpriv``):
a fork bomb exhausts its own uid's budget and nobody else's. As a normal user, each
sandbox gets its own user namespace, which counts its processes separately.
"""
from __future__ import annotations

import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from matrix_core import ConfigError, MatrixError
from matrix_core.sandbox import ExecResult, ToolRuntime

from . import _hardening
from ._process import exec_request, run_bounded
from ._workdirs import WorkRoot, read_inside, usage_bytes, write_inside

INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: apt-get install -y bubblewrap)"
LIB_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
MB = 1 << 20

DEFAULTS: dict[str, Any] = {
    "bwrap": "bwrap",
    "temp_root": None,
    "timeout_s": 10.0,
    "max_timeout_s": 300.0,
    "memory_mb": 512,
    "max_processes": 32,
    "max_output_bytes": 65536,
    "max_file_mb": 16,
    "max_open_files": 256,
    "tmp_size_mb": 64,
    "work_quota_mb": 64,
    "max_read_bytes": 16 * MB,
    "max_sandboxes": 32,
    "uid_base": 61000,
    "python_prefixes": None,
    "etc_files": ["/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives", "/etc/localtime", "/etc/nsswitch.conf"],
    "ro_binds": [],
    "env": {},
}


def _settings(cfg: Mapping[str, Any]) -> dict[str, Any]:
    s = {**DEFAULTS, **{k: v for k, v in cfg.items() if v is not None or k not in DEFAULTS}}
    try:
        for key in ("memory_mb", "max_processes", "max_output_bytes", "max_file_mb", "max_open_files", "tmp_size_mb",
                    "work_quota_mb", "max_read_bytes", "max_sandboxes", "uid_base"):
            s[key] = int(s[key])
        s["timeout_s"], s["max_timeout_s"] = float(s["timeout_s"]), float(s["max_timeout_s"])
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"runtime (sandbox): {exc}") from None
    for key in ("memory_mb", "max_processes", "max_output_bytes", "max_file_mb", "max_open_files", "tmp_size_mb", "max_sandboxes",
                "work_quota_mb"):
        if s[key] < 1:
            raise ConfigError(f"runtime.{key} must be >= 1, got {s[key]}")
    if s["timeout_s"] <= 0:
        raise ConfigError(f"runtime.timeout_s must be > 0, got {s['timeout_s']}")
    return s


def _full(work: Path) -> bool:
    try:
        return os.statvfs(work).f_bavail == 0
    except OSError:  # released while the command ran
        return False


class BubblewrapRuntime(ToolRuntime):
    def __init__(self, config: Mapping[str, Any]):
        super().__init__(config)
        self.s = _settings(config)
        self.root = WorkRoot(self.s["temp_root"], "sandbox")
        self.as_root = os.geteuid() == 0
        self.boxes: dict[str, dict[str, Any]] = {}  # id -> {"work": Path, "uid": int | None, "running": set}
        self.free_uids = list(range(self.s["uid_base"] + self.s["max_sandboxes"] - 1, self.s["uid_base"] - 1, -1))
        self.bwrap: str | None = None
        self.system_args: list[str] = []
        self.seccomp = _hardening.seccomp_program()
        self.mount_work = self.as_root  # size-limited work dirs need mount(2); the fallback checks after each command

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        self.bwrap = shutil.which(str(self.s["bwrap"]))
        if self.bwrap is None:
            raise MatrixError(f"runtime=sandbox needs bubblewrap, and `{self.s['bwrap']}` is not on PATH: {INSTALL_HINT}")
        for tool in ("prlimit", "setpriv") if self.as_root else ("prlimit",):
            if shutil.which(tool) is None:
                raise MatrixError(f"runtime=sandbox needs `{tool}` (util-linux), which is not on PATH")
        self.system_args = self._system_args()
        self.root.start()
        probe = await run_bounded(self._argv(self.s["uid_base"], self.root.mine, "/work", ["true"]), stdin=None, env=self._env({}),
                                  timeout_s=30, max_output_bytes=4096)
        if probe.exit_code != 0:
            why = (probe.stderr.strip().splitlines() or [probe.killed or f"exit {probe.exit_code}"])[-1]
            raise MatrixError(f"bubblewrap cannot create a sandbox here: {why} (it needs user namespaces, or root)")

    async def close(self) -> None:
        for sandbox_id in list(self.boxes):
            await self.destroy(sandbox_id)
        self.root.close()

    async def create(self, sandbox_id: str) -> dict[str, Any]:
        uid = None
        if self.as_root:
            if not self.free_uids:
                raise MatrixError(f"all {self.s['max_sandboxes']} sandbox uids are in use (runtime.max_sandboxes)")
            uid = self.free_uids.pop()
        try:
            work = self.root.create(sandbox_id, uid)
            if uid is not None:
                os.chmod(work.parent, 0o700)  # bwrap binds it as root: no other host user needs to reach it
            mounted = self.mount_work = self.mount_work and _hardening.mount_work(work, self.s["work_quota_mb"] * MB, uid)
        except OSError as exc:
            if uid is not None:
                self.free_uids.append(uid)
            raise MatrixError(f"cannot create a sandbox work dir under {self.root.mine}: {exc.strerror}") from None
        self.boxes[sandbox_id] = {"work": work, "uid": uid, "running": set(), "mounted": mounted}
        return {"runtime": "sandbox", "workdir": "/work", "uid": uid, "python": sys.executable}

    async def destroy(self, sandbox_id: str) -> None:
        box = self.boxes.pop(sandbox_id, None)
        if box is None:
            return
        for proc in list(box["running"]):
            try:
                os.killpg(proc.pid, 9)
            except (ProcessLookupError, PermissionError):
                pass
        for proc in list(box["running"]):
            await proc.wait()
        if box["mounted"]:
            _hardening.unmount(box["work"])
        self.root.remove(sandbox_id)
        if box["uid"] is not None:
            self.free_uids.append(box["uid"])

    def census(self) -> dict[str, int]:
        return {"processes": sum(len(b["running"]) for b in self.boxes.values()), "work_dirs": self.root.count()}

    # --- commands ------------------------------------------------------------------------
    def _box(self, sandbox_id: str) -> dict[str, Any]:
        box = self.boxes.get(sandbox_id)
        if box is None:
            raise MatrixError(f"no sandbox {sandbox_id} (it was released)")
        return box

    def _system_args(self) -> list[str]:
        args = ["--ro-bind", "/usr", "/usr"]
        for d in LIB_DIRS:
            if os.path.islink(d):
                args += ["--symlink", os.readlink(d), d]
            elif os.path.isdir(d):
                args += ["--ro-bind", d, d]
        args += ["--dir", "/etc"]
        for f in self.s["etc_files"] or []:
            if os.path.exists(f):
                args += ["--ro-bind", f, f]
        prefixes = self.s["python_prefixes"] or sorted({sys.base_prefix, sys.prefix})
        for p in [*prefixes, *(self.s["ro_binds"] or [])]:
            p = os.path.realpath(p)
            if os.path.exists(p) and not p.startswith("/usr/"):
                args += ["--ro-bind", p, p]
        return args

    def _argv(self, uid: int | None, work: Path, cwd: str, command: Sequence[str], timeout_s: float = 10.0) -> list[str]:
        s = self.s
        limits = [
            "prlimit", f"--as={s['memory_mb'] * MB}", f"--nproc={s['max_processes']}", f"--fsize={s['max_file_mb'] * MB}",
            f"--nofile={s['max_open_files']}", f"--cpu={math.ceil(timeout_s) + 1}", "--core=0", "--",
        ]
        argv = [
            self.bwrap, *self.system_args,
            "--proc", "/proc", "--dev", "/dev",
            "--perms", "1777", "--size", str(s["tmp_size_mb"] * MB), "--tmpfs", "/tmp",
            "--bind", str(work), "/work",
            # bwrap's root and /dev are tmpfs with no size: nothing is to be written there.
            "--remount-ro", "/dev", "--remount-ro", "/", "--chdir", cwd,
            "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--hostname", "sandbox", "--die-with-parent", "--new-session",
        ]
        if self.as_root:
            argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--", *limits,
                     "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
                     "--bounding-set=-all", "--no-new-privs", "--"]
        else:
            argv += ["--unshare-user", "--disable-userns", "--", *limits]
        return argv + list(command)

    def _env(self, extra: Mapping[str, str]) -> dict[str, str]:
        prefix_bin = os.path.join(sys.prefix, "bin")
        env = {"PATH": f"{prefix_bin}:/usr/local/bin:/usr/bin:/bin", "HOME": "/work", "TMPDIR": "/tmp", "LANG": "C.UTF-8",
               "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
        env.update({str(k): str(v) for k, v in (self.s["env"] or {}).items()})
        env.update({str(k): str(v) for k, v in extra.items()})
        return env

    async def exec(self, sandbox_id: str, command: Sequence[str] | str, *, stdin: bytes | None = None,
                   env: Mapping[str, str] | None = None, cwd: str | None = None, timeout_s: float | None = None) -> ExecResult:
        box = self._box(sandbox_id)
        command, inner_cwd, timeout = exec_request(command, cwd, timeout_s, self.s)
        argv, pass_fds = self._argv(box["uid"], box["work"], inner_cwd, command, timeout), ()
        if self.seccomp is not None:
            pass_fds = (_hardening.seccomp_fd(self.seccomp),)
            argv[1:1] = ["--seccomp", str(pass_fds[0])]
        try:
            result = await run_bounded(argv, stdin=stdin, env=self._env(env or {}), timeout_s=timeout,
                                       max_output_bytes=self.s["max_output_bytes"], running=box["running"], pass_fds=pass_fds)
        finally:
            for fd in pass_fds:
                os.close(fd)
        used = usage_bytes(box["work"])
        result.info["work_bytes"] = used
        if box["mounted"] and _full(box["work"]):
            # The filesystem stopped the writes (ENOSPC) while the command ran; its files stay.
            result.killed = result.killed or "work_quota"
            result.stderr += f"\n[sandbox] work dir is full: runtime.work_quota_mb={self.s['work_quota_mb']}"
        elif used > self.s["work_quota_mb"] * MB:
            # Over quota: the files go, so the host's disk is never at the task's mercy.
            for entry in box["work"].iterdir():
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() and not entry.is_symlink() else entry.unlink(missing_ok=True)
            result.killed = result.killed or "work_quota"
            result.stderr += f"\n[sandbox] work dir grew past runtime.work_quota_mb={self.s['work_quota_mb']}: its files were deleted"
        return result

    async def read_file(self, sandbox_id: str, path: str) -> bytes:
        return read_inside(self._box(sandbox_id)["work"], path, self.s["max_read_bytes"])

    async def write_file(self, sandbox_id: str, path: str, data: bytes) -> None:
        box = self._box(sandbox_id)
        write_inside(box["work"], path, data, box["uid"])
