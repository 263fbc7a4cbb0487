"""The simulator in-process (no Ray): capacity model, queueing, faults, determinism.

Timing asserts compare simulated seconds with the model's prediction (exact up to arrival
spread) and bound the wall clock loosely: the machine is shared.
"""
from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import time

import httpx
import pytest

from matrix_core import ConfigError, Endpoint, LLMClient, LLMError
from matrix_plugin_simllm import settings
from matrix_plugin_simllm.engine import prompt_tokens, sample_length
from matrix_plugin_simllm.server import FINGERPRINT, SimServer

USER = [{"role": "user", "content": "Tell me something about tides."}]


def config(**over):
    """Fast, predictable settings: fixed 40-token replies, negligible prefill."""
    base = {"time_scale": 5, "tick_ms": 5, "decode_tps_single": 50, "decode_alpha": 0.1, "prefill_tps": 1e7,
            "output_tokens": {"dist": "fixed", "mean": 40}}
    for key, value in over.items():
        if isinstance(value, dict):
            base[key] = {**base.get(key, {}), **value}
        else:
            base[key] = value
    return settings(base)


@contextlib.asynccontextmanager
async def serving(cfg):
    server = SimServer(cfg)
    port = await server.start("127.0.0.1", 0)
    try:
        yield server, f"http://127.0.0.1:{port}/v1"
    finally:
        await server.close()


def client(base, **kw):
    kw = {"timeout_s": 30, "max_retries": 0, "max_concurrency_per_endpoint": 1024, **kw}
    return LLMClient([Endpoint(base_url=base, model="simllm")], **kw)


async def chat_many(base, n, **kw):
    llm = client(base, **kw)
    try:
        return await asyncio.gather(*(llm.chat(USER) for _ in range(n)))
    finally:
        await llm.aclose()


def test_reply_is_marked_simulated_and_usage_matches_content():
    async def go():
        async with serving(config()) as (_, base):
            llm = client(base)
            try:
                result = await llm.chat(USER, max_tokens=10)
                full = await llm.chat(USER)
            finally:
                await llm.aclose()
            return result, full

    result, full = asyncio.run(go())
    assert result.raw["system_fingerprint"] == FINGERPRINT and result.model == "simllm"
    assert result.usage.completion_tokens == len(result.content.split()) == 10 and result.finish_reason == "length"
    assert result.usage.prompt_tokens == prompt_tokens(USER) == 8  # 30 characters / 4, rounded up
    assert full.usage.completion_tokens == 40 and full.finish_reason == "stop"


def test_concurrent_requests_follow_the_capacity_model():
    # 8 sequences decode together: each at 50 / (1 + 0.1 * 7) tok/s, so 40 tokens take 1.36 s.
    cfg = config()
    predicted = 40 * (1 + 0.1 * 7) / 50

    async def go():
        async with serving(cfg) as (_, base):
            alone = (await chat_many(base, 1))[0].raw["simllm"]["latency_s"]
            started = time.perf_counter()
            results = await chat_many(base, 8)
            return alone, results, time.perf_counter() - started

    alone, results, wall = asyncio.run(go())
    assert alone == pytest.approx(40 / 50, rel=0.02)
    simulated = [r.raw["simllm"]["latency_s"] for r in results]
    assert all(s == pytest.approx(predicted, rel=0.1) for s in simulated), simulated
    # The real clock follows the simulated one at time_scale; loose: the machine is shared.
    assert 0.8 < wall * cfg["time_scale"] / predicted < 2.5, wall


def test_requests_beyond_max_num_seqs_queue():
    # 4 slots, 8 requests: two waves of 40 tokens at batch 4 (1.04 simulated s each).
    cfg = config(max_num_seqs=4, time_scale=2)
    wave = 40 * (1 + 0.1 * 3) / 50
    full = ('simllm_num_requests_running{model="simllm",replica="0"} 4', 'simllm_num_requests_waiting{model="simllm",replica="0"} 4')

    async def go():
        async with serving(cfg) as (server, base):
            task = asyncio.ensure_future(chat_many(base, 8))
            async with httpx.AsyncClient() as http:
                while not task.done():  # watch the gauges while the first wave runs
                    metrics = (await http.get(base[:-3] + "/metrics")).text
                    if all(f in metrics for f in full):
                        break
                    await asyncio.sleep(0.01)
            return await task, metrics

    results, metrics = asyncio.run(go())
    assert all(f in metrics for f in full), metrics
    timings = sorted((r.raw["simllm"] for r in results), key=lambda t: t["latency_s"])
    first, second = timings[:4], timings[4:]
    assert all(t["queue_s"] < 0.1 * wave and t["latency_s"] == pytest.approx(wave, rel=0.1) for t in first), first
    assert all(t["queue_s"] == pytest.approx(wave, rel=0.1) and t["latency_s"] == pytest.approx(2 * wave, rel=0.1) for t in second), second


def test_busy_slot_seconds_measure_utilisation():
    # 4 slots, 8 requests in two waves: every slot busy for 2 waves, then idle.
    cfg = config(max_num_seqs=4, time_scale=2)
    wave = 40 * (1 + 0.1 * 3) / 50

    async def go():
        async with serving(cfg) as (server, base):
            await chat_many(base, 8)
            busy_after_load = server.engine.slot_seconds
            await asyncio.sleep(0.2)  # idle time adds nothing
            async with httpx.AsyncClient() as http:
                metrics = (await http.get(base[:-3] + "/metrics")).text
            return busy_after_load, server.engine.slot_seconds, metrics

    busy, later, metrics = asyncio.run(go())
    assert busy == pytest.approx(4 * 2 * wave, rel=0.1) and later == busy
    assert f'simllm_busy_slot_seconds_total{{model="simllm",replica="0"}} {busy:g}' in metrics


def test_prefill_is_served_one_prompt_at_a_time():
    # 4 prompts of 1000 tokens at 10,000 tok/s: first tokens at 0.1, 0.2, 0.3, 0.4 simulated s.
    cfg = config(prefill_tps=10_000)
    messages = [{"role": "user", "content": "x" * 4000}]

    async def go():
        async with serving(cfg) as (_, base):
            llm = client(base)
            try:
                return await asyncio.gather(*(llm.chat(messages, max_tokens=1) for _ in range(4)))
            finally:
                await llm.aclose()

    ttfts = sorted(r.raw["simllm"]["ttft_s"] for r in asyncio.run(go()))
    assert all(r == pytest.approx(0.1 * (i + 1), abs=0.03) for i, r in enumerate(ttfts)), ttfts


def test_429_carries_retry_after_and_the_client_retries_through_it():
    async def go():
        async with serving(config(faults={"rate_429": 1.0, "retry_after_s": 0.05})) as (_, base):
            async with httpx.AsyncClient() as http:
                first = await http.post(base + "/chat/completions", json={"messages": USER})
        async with serving(config(faults={"rate_429": 0.5, "retry_after_s": 0.01}, seed=3, time_scale=100)) as (server, base):
            results = [await chat_many(base, 1, max_retries=12) for _ in range(10)]
            return first, results, server

    first, results, server = asyncio.run(go())
    assert first.status_code == 429 and first.headers["Retry-After"] == "0.05"
    assert first.json()["error"]["type"] == "rate_limit_error"
    assert len(results) == 10 and server.injected["429"] > 0 and server.outcomes["ok"] == 10


def test_500_is_retried_and_a_permanent_500_raises():
    async def go():
        async with serving(config(faults={"rate_500": 0.5}, seed=5)) as (server, base):
            await chat_many(base, 10, max_retries=12, backoff_base_s=0.01, backoff_max_s=0.02)
            retried = server.injected["500"]
        async with serving(config(faults={"rate_500": 1.0})) as (server, base):
            with pytest.raises(LLMError, match="HTTP 500"):
                await chat_many(base, 1, max_retries=2, backoff_base_s=0.01)
            return retried, server.injected["500"]

    retried, permanent = asyncio.run(go())
    assert retried > 0 and permanent == 3


def test_timeout_fault_hangs_until_the_client_gives_up():
    async def go():
        async with serving(config(faults={"rate_timeout": 1.0})) as (server, base):
            started = time.perf_counter()
            with pytest.raises(LLMError, match="timed out"):
                await chat_many(base, 1, timeout_s=0.3, max_retries=1, backoff_base_s=0.01)
            waited = time.perf_counter() - started
            for _ in range(100):  # the server notices the disconnect and drops the hung handlers
                if server.hanging == 0:
                    break
                await asyncio.sleep(0.02)
            return waited, server

    waited, server = asyncio.run(go())
    assert waited >= 0.6 and server.injected["timeout"] == 2
    assert server.hanging == 0 and server.outcomes["timeout"] == 2


def test_a_client_that_gives_up_frees_its_slot():
    async def go():
        async with serving(config(max_num_seqs=1, output_tokens={"mean": 1000})) as (server, base):
            with pytest.raises(LLMError, match="timed out"):
                await chat_many(base, 3, timeout_s=0.2)
            for _ in range(100):
                if server.engine.running == 0 and server.engine.n_waiting == 0:
                    break
                await asyncio.sleep(0.02)
            return server.engine

    engine = asyncio.run(go())
    assert engine.running == 0 and engine.n_waiting == 0 and engine.aborted == 3


def test_same_seed_same_faults_and_lengths():
    cfg = {"output_tokens": {"dist": "lognormal", "mean": 30, "sigma": 0.8}, "faults": {"rate_500": 0.3}}

    async def trace(seed):
        async with serving(config(seed=seed, time_scale=1000, **cfg)) as (_, base):
            async with httpx.AsyncClient() as http:
                out = []
                for _ in range(20):
                    r = await http.post(base + "/chat/completions", json={"messages": USER})
                    out.append((r.status_code, r.json()["usage"]["completion_tokens"] if r.status_code == 200 else None))
                return out

    a, b, c = (asyncio.run(trace(s)) for s in (1, 1, 2))
    assert a == b and a != c
    assert {code for code, _ in a} == {200, 500}


def test_output_length_distributions():
    rng = random.Random(0)
    lognormal = [sample_length(rng, {"dist": "lognormal", "mean": 128, "sigma": 0.6, "min": 1, "max": 100_000}) for _ in range(20_000)]
    assert statistics.mean(lognormal) == pytest.approx(128, rel=0.03)
    uniform = [sample_length(rng, {"dist": "uniform", "mean": 1, "sigma": 0, "min": 5, "max": 9}) for _ in range(1000)]
    assert set(uniform) == {5, 6, 7, 8, 9}
    assert sample_length(rng, {"dist": "lognormal", "mean": 1e6, "sigma": 0.1, "min": 1, "max": 64}) == 64


def test_bad_requests_and_settings_are_one_line():
    async def go():
        async with serving(config()) as (_, base):
            async with httpx.AsyncClient() as http:
                return [
                    await http.post(base + "/chat/completions", json={"messages": USER, "model": "gpt-9"}),
                    await http.post(base + "/chat/completions", json={"messages": USER, "stream": True}),
                    await http.post(base + "/chat/completions", content=b"{"),
                    await http.get(base + "/models"),
                ]

    wrong_model, stream, not_json, models = asyncio.run(go())
    assert wrong_model.status_code == 404 and "gpt-9" in wrong_model.json()["error"]["message"]
    assert stream.status_code == 400 and not_json.status_code == 400
    assert models.json()["data"][0]["id"] == "simllm"
    with pytest.raises(ConfigError, match="together at most 1"):
        settings({"faults": {"rate_500": 0.7, "rate_429": 0.7}})
    with pytest.raises(ConfigError, match="llm.faults.rate_501 is not a simllm setting"):
        settings({"faults": {"rate_501": 0.1}})
    with pytest.raises(ConfigError, match="output_tokens.dist must be one of"):
        settings({"output_tokens": {"dist": "zipf"}})


def test_standalone_server(tmp_path):
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "matrix_plugin_simllm", "--port", "0", "--time-scale", "100", "--faults-crash-after", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "(simulated, model simllm)" in line, proc.stderr.read() if proc.poll() is not None else line
        base = line.split()[3]
        assert httpx.post(base + "/chat/completions", json={"messages": USER}).status_code == 200
        with pytest.raises(httpx.HTTPError):  # the crash fault ends the process mid-request
            httpx.post(base + "/chat/completions", json={"messages": USER})
        assert proc.wait(10) == 3
    finally:
        if proc.poll() is None:
            proc.kill()
