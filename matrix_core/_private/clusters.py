"""``--cluster NAME``: join a Ray cluster that ``matrix cluster start`` made.

``start`` (the ``matrix-plugin-cluster`` plugin) writes ``$MATRIX_HOME/clusters/NAME/cluster.json``
(default ``~/.matrix``; directory 0700, file 0600) with the head address and the cluster's
Ray auth token. This module only reads it: ``join(name)`` returns the address and puts the
token where Ray looks for it (``RAY_AUTH_MODE=token``, ``RAY_AUTH_TOKEN``) in this process, so
the token never travels on a command line.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError

INFO_FILE = "cluster.json"


def matrix_home() -> Path:
    return Path(os.environ.get("MATRIX_HOME") or "~/.matrix").expanduser()


def clusters_dir() -> Path:
    return matrix_home() / "clusters"


def info_path(name: str) -> Path:
    return clusters_dir() / name / INFO_FILE


def known() -> list[str]:
    root = clusters_dir()
    return sorted(p.parent.name for p in root.glob(f"*/{INFO_FILE}")) if root.is_dir() else []


def load(name: str) -> dict[str, Any]:
    """The info of cluster ``name``; ConfigError lists the known clusters."""
    path = info_path(name)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"unknown cluster {name!r} (no {path}); known: {', '.join(known()) or 'none'} "
            "(start one with `matrix cluster start NAME --local` or on Slurm)"
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read cluster info {path}: {exc}") from None


def auth_env(info: dict[str, Any]) -> dict[str, str]:
    """Environment that makes Ray use the cluster's token."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": info["token"]} if info.get("token") else {}


def use_auth(env: dict[str, str]) -> None:
    """Make this process's Ray use ``env``'s auth settings, even if Ray is already imported."""
    import sys

    os.environ.pop("RAY_AUTH_TOKEN_PATH", None)  # another cluster's token must not be picked up
    os.environ.update(env)
    if "ray._raylet" in sys.modules:  # Ray reads RAY_AUTH_MODE and caches the token on first use
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()


def join(name: str) -> str:
    """The head address of cluster ``name``, with its token set for Ray in this process."""
    info = load(name)
    if not info.get("address"):
        raise ConfigError(f"cluster {name!r} has no head address yet (its head is not up; see `matrix cluster status {name}`)")
    use_auth(auth_env(info))
    return str(info.get("driver_address") or info["address"])
