"""The response cache: keys, many processes writing at once, size limit, `matrix cache`, and
the client answering a repeated call from disk with the answer marked cached."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from matrix_core import LLMClient
from matrix_core._private.llm_cache import LLMCache, cache_from_config, request_key
from matrix_core.testing import FAKE_ENDPOINT


def test_key_covers_what_decides_the_answer_and_ignores_key_order():
    base = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.5, "seed": 1}
    assert request_key(base) == request_key(dict(reversed(list(base.items()))))
    for change in ({"model": "n"}, {"temperature": 0.6}, {"seed": 2}, {"tools": [{"type": "function"}]},
                   {"messages": [{"role": "user", "content": "hi!"}]}, {"n": 2}):
        assert request_key({**base, **change}) != request_key(base), change


_WRITER = """
import asyncio, sys
from matrix_core._private.llm_cache import LLMCache

async def go(path, worker, count):
    cache = LLMCache(path)
    for i in range(count):
        await cache.put(f"k{worker}-{i}", {"choices": [{"message": {"content": f"{worker}/{i}"}}]})
    cache.close()

asyncio.run(go(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


def test_many_processes_write_one_cache_at_once(tmp_path):
    # Separate interpreters, not multiprocessing: a spawned child cannot import this test module under tox.
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), str(w), "40"]) for w in range(4)]
    assert [p.wait(300) for p in procs] == [0, 0, 0, 0]

    async def read():
        cache = LLMCache(tmp_path)
        found = [await cache.get(f"k{w}-{i}") for w in range(4) for i in range(40)]
        return cache, found

    cache, found = asyncio.run(read())
    assert [f["choices"][0]["message"]["content"] for f in found] == [f"{w}/{i}" for w in range(4) for i in range(40)]
    assert cache.stats() == {"hits": 160, "misses": 0} and cache.info()["entries"] == 160


def test_size_limit_evicts_old_answers(tmp_path):
    async def fill():
        cache = LLMCache(tmp_path, size_limit_mb=0.25)
        for i in range(400):
            await cache.put(f"k{i}", {"text": "x" * 4000})
        return cache

    cache = asyncio.run(fill())
    assert cache.info()["entries"] < 400 and cache.info()["size_bytes"] <= 0.25 * 2**20 * 1.2


def test_client_answers_a_repeated_call_from_the_cache(tmp_path):
    cache = cache_from_config({"enabled": True, "path": str(tmp_path), "size_limit_mb": 10})
    assert cache_from_config({"enabled": False, "path": str(tmp_path)}) is None

    async def go():
        llm = LLMClient([FAKE_ENDPOINT], cache=cache)
        try:
            first = await llm.chat([{"role": "user", "content": "hello"}], temperature=0.3)
            again = await llm.chat([{"role": "user", "content": "hello"}], temperature=0.3)
            other = await llm.chat([{"role": "user", "content": "hello"}], temperature=0.4)
        finally:
            await llm.aclose()
        return first, again, other, llm.cache_stats()

    first, again, other, stats = asyncio.run(go())
    assert not first.cached and again.cached and not other.cached
    assert again.content == first.content and again.raw == first.raw and again.model == first.model
    assert again.to_turn().cached is True and first.to_turn().cached is None
    assert stats == {"hits": 1, "misses": 2}


def test_cache_info_and_clear_commands(tmp_path):
    cache = LLMCache(tmp_path)
    asyncio.run(cache.put("k", {"a": 1}))
    cache.close()
    env = {**os.environ, "MATRIX_CACHE_DIR": str(tmp_path)}
    info = subprocess.run(["matrix", "cache", "info"], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert info.returncode == 0 and f"{tmp_path}: 1 entries" in info.stdout, info.stderr
    cleared = subprocess.run(["matrix", "cache", "clear", "--path", str(tmp_path)], capture_output=True, text=True, timeout=300, check=False)
    assert cleared.returncode == 0 and "removed 1 entries" in cleared.stdout
    missing = subprocess.run(["matrix", "cache", "info", "--path", str(tmp_path / "none")], capture_output=True, text=True, timeout=300, check=False)
    assert missing.returncode == 2 and missing.stderr.strip().startswith("matrix: error: no LLM cache at")
    assert len(missing.stderr.strip().splitlines()) == 1
