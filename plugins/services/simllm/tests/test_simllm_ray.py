"""Replicas as Ray actors: ports, crash faults, and `matrix run dialogue llm=simllm` end to end."""
from __future__ import annotations

import asyncio
import json

import httpx
import pytest

import matrix_core
from matrix_core import LLMClient, LLMError, task_id_for
from matrix_core.testing import assert_exactly_once, read_records
from matrix_plugin_simllm import NAMESPACE, start_simllm

USER = [{"role": "user", "content": "Ask me about volcanoes."}]


def topic_ids():
    from importlib.resources import files

    lines = files("matrix_plugin_dialogue").joinpath("data/topics.jsonl").read_text().splitlines()
    return [task_id_for(json.loads(line)["id"], 0) for line in lines if line.strip()]


def chats(endpoints, n, *, concurrent=True, **kw):
    async def go():
        llm = LLMClient(endpoints, **{"timeout_s": 30, "max_retries": 0, **kw})
        try:
            if concurrent:
                return await asyncio.gather(*(llm.chat(USER) for _ in range(n)))
            return [await llm.chat(USER) for _ in range(n)]
        finally:
            await llm.aclose()

    return asyncio.run(go())


def gone(ray, name, namespace=NAMESPACE):
    """The named replica is dead: its name is released, or its handle reports it died."""
    try:
        actor = ray.get_actor(name, namespace=namespace)
    except ValueError:
        return True
    try:
        ray.get(actor.stats.remote(), timeout=20)
    except ray.exceptions.RayActorError:
        return True
    return False


def test_replicas_serve_on_their_own_ports_and_stop(matrix_ray):
    handle = start_simllm({"replicas": 2, "time_scale": 50})
    try:
        urls = [e.base_url for e in handle.endpoints]
        assert len(set(urls)) == 2 and all(u.startswith("http://127.0.0.1:") for u in urls)
        assert not handle.info["detached"] and handle.info["simulated"]
        for name in handle.info["actors"]:
            assert matrix_ray.get_actor(name, namespace=NAMESPACE)
        for url in urls:
            assert httpx.get(url[:-3] + "/health").json()["simulated"] is True
        replicas = {r.raw["simllm"]["replica"] for r in chats(handle.endpoints, 8)}
        assert replicas == {0, 1}  # the client spreads load over both
    finally:
        handle.stop()
    assert all(gone(matrix_ray, name) for name in handle.info["actors"])
    for url in urls:
        with pytest.raises(httpx.ConnectError):
            httpx.get(url[:-3] + "/health", timeout=2)


def test_crash_fault_kills_the_actor_and_the_client_fails_over(matrix_ray):
    handle = start_simllm({"replicas": 2, "time_scale": 50, "faults": {"crash_after": 2}})
    try:
        # Sequential calls all go to replica 0 (fewest in flight, first on ties); its third
        # request crashes it, and the client retries on replica 1.
        results = chats(handle.endpoints, 3, concurrent=False, max_retries=2, backoff_base_s=0.01)
        assert [r.raw["simllm"]["replica"] for r in results] == [0, 0, 1]
        assert gone(matrix_ray, handle.info["actors"][0])
        with pytest.raises(LLMError, match="unreachable"):
            chats(handle.endpoints[:1], 1)
    finally:
        handle.stop()


def test_dialogue_end_to_end_on_simllm(matrix_ray, tmp_path):
    out = tmp_path / "d.jsonl"
    summary = matrix_core.run("dialogue", ["llm=simllm", f"output.path={out}", "run.progress=off", "llm.time_scale=20"])
    records = read_records(out)
    assert summary.done == 24 and summary.failed == 0
    assert_exactly_once(records, topic_ids())
    assert all(len(r["history"]) == 4 and all(t["content"] for t in r["history"]) for r in records)
    # Replies are capped by the workflow's max_tokens (48 for questions, 96 for answers).
    assert all(t["usage"]["completion_tokens"] <= 96 for r in records for t in r["history"])


def test_dialogue_completes_through_injected_500s(matrix_ray, tmp_path):
    # 96 calls at a 30% failure rate: some fail (all-succeed odds ~1e-15) and are retried;
    # 12 retries make a call that fails for good about 1 in 10^6.
    out = tmp_path / "d.jsonl"
    summary = matrix_core.run("dialogue", [
        "llm=simllm", f"output.path={out}", "run.progress=off", "llm.time_scale=20", "llm.replicas=2",
        "llm.faults.rate_500=0.3", "llm.client.max_retries=12", "llm.client.backoff_base_s=0.01", "llm.client.backoff_max_s=0.1",
    ])
    assert summary.done == 24 and summary.failed == 0
    assert_exactly_once(read_records(out), topic_ids())
