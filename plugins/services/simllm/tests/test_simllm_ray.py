"""Replicas as a Ray Serve deployment: routing, crash faults, and `matrix run dialogue llm=simllm` end to end."""
from __future__ import annotations

import asyncio
import json

import httpx

import matrix_core
from matrix_core import LLMClient, task_id_for
from matrix_core.testing import assert_exactly_once, read_records
from matrix_plugin_simllm import start_simllm

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


def test_replicas_behind_serve_answer_and_stop(matrix_ray):
    from matrix_core._private.serving import app_names

    handle = start_simllm({"replicas": 2, "time_scale": 50})
    name = handle.info["serve_app"]
    try:
        [endpoint] = handle.endpoints  # Serve's proxy spreads the calls over the replicas
        assert endpoint.base_url.endswith(f"/{name}/v1") and handle.info["simulated"] and handle.info["owned"]
        assert httpx.get(endpoint.base_url[:-3] + "/health", trust_env=False).json()["simulated"] is True
        replicas = {r.raw["simllm"]["replica"] for r in chats(handle.endpoints, 16)}
        assert replicas == {0, 1}
    finally:
        handle.stop()
    assert name not in app_names()
    assert httpx.get(endpoint.base_url + "/models", trust_env=False).status_code == 404


def test_crash_fault_kills_a_replica_and_the_calls_go_on(matrix_ray):
    # A crashed replica's request fails at the proxy; the client's retry lands on the other one,
    # and Serve replaces the dead one.
    handle = start_simllm({"replicas": 2, "time_scale": 50, "faults": {"crash_after": 2}})
    try:
        results = chats(handle.endpoints, 6, concurrent=False, max_retries=4, backoff_base_s=0.05)
        assert len(results) == 6 and all(r.content for r in results)
    finally:
        handle.stop()


def test_a_run_removes_its_own_deployment(matrix_ray, tmp_path):
    from matrix_core._private.serving import PER_RUN_PREFIX, app_names

    out = tmp_path / "d.jsonl"
    summary = matrix_core.run("dialogue", ["llm=simllm", f"output.path={out}", "run.progress=off", "llm.time_scale=20", "dataset.limit=4"])
    assert summary.done == 4 and summary.failed == 0
    assert not [a for a in app_names() if a.startswith(PER_RUN_PREFIX)]


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
