"""The cluster info file: created once per name (the directory is the lock), updated under a lock."""
from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from matrix_core._private.clusters import INFO_FILE, clusters_dir, info_path, known, load
from matrix_core.errors import ConfigError

from .node import write_private


def cluster_dir(name: str) -> Path:
    return info_path(name).parent


def create(name: str, executor: str, **fields: Any) -> dict[str, Any]:
    """A new cluster's info with a fresh auth token; refuses a name that exists."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", name):
        raise ConfigError(f"cluster name {name!r}: use letters, digits, '_', '.', '-' (at most 63)")
    root = clusters_dir()
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(root, 0o700)  # tokens live below: nobody else may even list the names
    path = cluster_dir(name)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        raise ConfigError(
            f"cluster {name!r} already exists ({path}); stop it first: matrix cluster stop {name}"
        ) from None
    os.chmod(path, 0o700)  # mkdir's mode is masked by the umask
    info = {"name": name, "executor": executor, "created": time.time(), "address": None,
            "token": secrets.token_hex(32), "head": {}, "workers": [], "next_worker": 1, **fields}
    write_private(path / INFO_FILE, info)
    return info


@contextmanager
def update(name: str) -> Iterator[dict[str, Any]]:
    """``with update(name) as info: ...`` changes the info file under an exclusive lock."""
    path = cluster_dir(name)
    if not (path / INFO_FILE).exists():
        load(name)  # raises with the list of known clusters
    with os.fdopen(os.open(path / ".lock", os.O_WRONLY | os.O_CREAT, 0o600), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        info = load(name)
        yield info
        write_private(path / INFO_FILE, info)


def remove(name: str) -> None:
    shutil.rmtree(cluster_dir(name), ignore_errors=True)


def require(name: str) -> dict[str, Any]:
    if name not in known():
        raise ConfigError(f"unknown cluster {name!r}; known: {', '.join(known()) or 'none'}")
    return load(name)


def public(info: dict[str, Any]) -> dict[str, Any]:
    """The info without its secret, for output."""
    return {k: v for k, v in info.items() if k != "token"}


def log_tail(path: Path | str | None, lines: int = 15) -> str:
    if not path:
        return "(no log)"
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    tail = [line for line in text if line.strip()][-lines:]
    return "\n".join(tail) or f"(empty log {path})"


def dump(info: dict[str, Any]) -> str:
    return json.dumps(public(info), indent=2)
