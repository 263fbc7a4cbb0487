"""The opt-in response cache of LLM calls (``cache.enabled=true``).

A call is keyed by everything that decides its answer: the request body the client would
send (model, messages, tools, response format, sampling params, seed, ``n``, logprobs).
The value is the server's completion JSON as it came, so a hit is parsed exactly as the
original answer was. The store is ``diskcache`` (SQLite in WAL mode): many agent hosts, in
many processes, read and write one directory at once; it evicts the least recently stored
entries past ``size_limit_mb``.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

from ..errors import ConfigError

DEFAULT_PATH = "~/.cache/matrix/llm"
KEY_VERSION = "v1"  # bump when the key's recipe changes: old entries then never match


def request_key(body: Mapping[str, Any]) -> str:
    """A stable digest of a chat request body (key order does not matter)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return KEY_VERSION + ":" + hashlib.sha256(canonical.encode()).hexdigest()


class LLMCache:
    """Completions by request key, on disk; counts this process's hits and misses."""

    def __init__(self, path: str | os.PathLike = DEFAULT_PATH, size_limit_mb: float = 1024):
        import diskcache

        self.path = Path(path).expanduser()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._store = diskcache.Cache(str(self.path), size_limit=int(float(size_limit_mb) * 2**20))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cache.path={str(path)!r} cannot hold the LLM cache: {exc}") from None
        self.hits = 0
        self.misses = 0

    async def get(self, key: str) -> dict[str, Any] | None:
        value = await asyncio.to_thread(self._store.get, key)
        try:
            completion = json.loads(value) if isinstance(value, str) else None
        except ValueError:  # a damaged entry: asked again, then overwritten
            completion = None
        if not isinstance(completion, dict) or not completion.get("choices"):
            self.misses += 1
            return None
        self.hits += 1
        return completion

    async def put(self, key: str, completion: Mapping[str, Any]) -> None:
        # Stored as a JSON string, never pickled: reading the cache runs no code from it.
        await asyncio.to_thread(self._store.set, key, json.dumps(completion, ensure_ascii=False))

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses}

    def info(self) -> dict[str, Any]:
        return {"path": str(self.path), "entries": len(self._store), "size_bytes": self._store.volume(),
                "size_limit_bytes": self._store.size_limit}

    def clear(self) -> int:
        return self._store.clear()

    def close(self) -> None:
        self._store.close()


def cache_from_config(cfg: Mapping[str, Any] | None) -> LLMCache | None:
    """The run's cache from the top-level ``cache`` section, or None when it is off."""
    cfg = cfg or {}
    if not cfg.get("enabled"):
        return None
    return LLMCache(cfg.get("path") or DEFAULT_PATH, float(cfg.get("size_limit_mb") or 1024))


def cache_command():
    """``matrix cache info|clear``: the response cache on this machine."""
    import click

    from ..errors import MatrixError

    path_option = click.option("--path", default=None, help=f"cache directory (default: $MATRIX_CACHE_DIR or {DEFAULT_PATH})")

    def _open(path: str | None) -> LLMCache:
        p = Path(path or os.environ.get("MATRIX_CACHE_DIR") or DEFAULT_PATH).expanduser()
        if not p.is_dir():
            raise MatrixError(f"no LLM cache at {p} (a run with cache.enabled=true creates it)")
        return LLMCache(p)

    @click.group("cache", help="The LLM response cache (runs with cache.enabled=true).")
    def group():
        pass

    @group.command("info", help="Where the cache is, its entries and size.")
    @path_option
    def info(path):
        cache = _open(path)
        i = cache.info()
        click.echo(f"{i['path']}: {i['entries']} entries, {i['size_bytes'] / 2**20:.1f} MiB of {i['size_limit_bytes'] / 2**20:.0f} MiB")
        cache.close()

    @group.command("clear", help="Remove every cached answer.")
    @path_option
    def clear(path):
        cache = _open(path)
        removed = cache.clear()
        click.echo(f"{cache.path}: removed {removed} entries")
        cache.close()

    return group
