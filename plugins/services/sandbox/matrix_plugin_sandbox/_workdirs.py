"""Per-sandbox work dirs under a runtime-owned temp root, and safe host-side file access.

Layout: ``<temp_root>/<owner>/<sandbox id>/``, where ``<owner>`` is one runtime process
(``owner.json`` holds its pid and start time). A runtime starting up deletes the folders of
owners that are no longer alive, and kills anything still running from them, so a crash
leaves nothing behind for longer than the next start.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import tempfile
import uuid
from pathlib import Path

import psutil

from matrix_core import MatrixError

from ._hardening import unmount_below

OWNER_FILE = "owner.json"


def _alive(owner: dict) -> bool:
    if owner.get("host") != socket.gethostname():
        return True  # a shared temp root: not ours to judge
    try:
        return abs(psutil.Process(int(owner["pid"])).create_time() - float(owner["started"])) < 1.0
    except (psutil.Error, KeyError, TypeError, ValueError):
        return False


def kill_processes_mentioning(path: str) -> int:
    """Kills processes whose command line names ``path`` (sandboxes whose owner died)."""
    killed = 0
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(path in arg for arg in proc.info["cmdline"] or []):
                proc.kill()
                killed += 1
        except psutil.Error:
            pass
    return killed


class WorkRoot:
    def __init__(self, temp_root: str | None, runtime: str):
        self.base = Path(temp_root or tempfile.gettempdir()) / f"matrix-{runtime}"
        self.mine = self.base / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    def start(self) -> dict[str, int]:
        """Removes what dead owners left; makes this owner's folder. Returns what it removed."""
        self.base.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o711)  # sandbox uids may traverse to their own dir, never list
        removed = {"dirs": 0, "processes": 0}
        for entry in self.base.iterdir():
            try:
                owner = json.loads((entry / OWNER_FILE).read_text())
            except (OSError, ValueError):
                owner = {}
            if entry == self.mine or (owner and _alive(owner)):
                continue
            removed["processes"] += kill_processes_mentioning(str(entry))
            unmount_below(entry)  # size-limited work dirs (sandbox) are mounts of their own
            shutil.rmtree(entry, ignore_errors=True)
            removed["dirs"] += 1
        self.mine.mkdir(mode=0o711)
        me = psutil.Process()
        (self.mine / OWNER_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": me.pid, "started": me.create_time()}))
        return removed

    def create(self, sandbox_id: str, uid: int | None) -> Path:
        work = self.mine / sandbox_id / "work"
        work.mkdir(parents=True, mode=0o700)
        if uid is not None:
            os.chmod(work.parent, 0o711)
            os.chown(work, uid, uid)
        return work

    def remove(self, sandbox_id: str) -> None:
        shutil.rmtree(self.mine / sandbox_id, ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self.mine, ignore_errors=True)

    def count(self) -> int:
        try:
            return sum(1 for e in self.mine.iterdir() if e.is_dir())
        except FileNotFoundError:
            return 0


def _parts(path: str) -> list[str]:
    rel = str(path)
    if rel == "/work" or rel.startswith("/work/"):
        rel = rel[len("/work"):]
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise MatrixError(f"{path}: not a file path inside the sandbox's work dir")
    return parts


def _open_inside(work: Path, path: str, flags: int, uid: int | None = None, create_dirs: bool = False) -> int:
    """Opens ``path`` (relative, or absolute under ``/work``) below ``work`` one component at a
    time without following any symlink: the sandbox owns these folders and could otherwise
    point one at a host file, even between a check and the open."""
    parts = _parts(path)
    fd = os.open(work, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in parts[:-1]:
            try:
                nxt = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if not create_dirs:
                    raise
                os.mkdir(name, 0o755, dir_fd=fd)
                if uid is not None:
                    os.chown(name, uid, uid, dir_fd=fd, follow_symlinks=False)
                nxt = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
        return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644, dir_fd=fd)
    except FileNotFoundError:
        raise MatrixError(f"{path}: no such file in the sandbox") from None
    except OSError as exc:
        why = "a symlink or not a folder on the way" if exc.errno in (40, 20) else exc.strerror
        raise MatrixError(f"{path}: cannot open in the sandbox ({why})") from None
    finally:
        os.close(fd)


def read_inside(work: Path, path: str, max_bytes: int) -> bytes:
    fd = _open_inside(work, path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise MatrixError(f"{path}: not a regular file")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise MatrixError(f"{path}: larger than runtime.max_read_bytes={max_bytes}")
    return data


def write_inside(work: Path, path: str, data: bytes, uid: int | None) -> None:
    fd = _open_inside(work, path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, uid, create_dirs=True)
    with os.fdopen(fd, "wb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise MatrixError(f"{path}: not a regular file")
        f.write(data)
        if uid is not None:
            os.fchown(f.fileno(), uid, uid)


def usage_bytes(work: Path, limit_entries: int = 100_000) -> int:
    """Bytes under ``work`` (by allocated blocks); more than ``limit_entries`` entries counts as huge."""
    total = entries = 0
    stack = [str(work)]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for e in it:
                    entries += 1
                    if entries > limit_entries:
                        return 1 << 62
                    st = e.stat(follow_symlinks=False)
                    total += st.st_blocks * 512
                    if e.is_dir(follow_symlinks=False):
                        stack.append(e.path)
        except OSError:
            continue
    return total
