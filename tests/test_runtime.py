"""The peer-to-peer runtime on a real local Ray: routing, backpressure, failures, limits."""
import json

import pytest

import matrix_core
from matrix_core.testing import assert_exactly_once, read_records


def run(tmp_path, workflow="relay", *overrides):
    out = tmp_path / "out.jsonl"
    summary = matrix_core.run(workflow, [f"output.path={out}", "run.progress=off", *overrides])
    return summary, read_records(out)


def ids(n):
    return [f"{i}#0" for i in range(n)]


def test_every_task_visits_every_role_in_order(matrix_ray, tmp_path):
    summary, records = run(tmp_path, "relay", "dataset.size=500", "laps=2")
    assert_exactly_once(records, ids(500))
    assert summary.done == 500 and summary.failed == 0 and summary.hops == 500 * 6
    for r in records:
        assert r["status"] == "done" and r["steps"] == 6
        assert [v[0] for v in r["state"]["visits"]] == ["a", "b", "c"] * 2


def test_forwarding_across_processes_when_roles_are_not_colocated(matrix_ray, tmp_path):
    summary, records = run(tmp_path, "relay", "dataset.size=300", "run.colocate=false", "run.hosts=1")
    assert_exactly_once(records, ids(300))
    pids = {tuple(v[1] for v in r["state"]["visits"]) for r in records}
    assert all(len(set(p)) == 3 for p in pids), "each role should run in its own actor process"


def test_backpressure_caps_steps_per_replica_and_tasks_in_flight(matrix_ray, tmp_path):
    summary, records = run(
        tmp_path, "relay", "dataset.size=200", "run.hosts=1", "run.max_concurrent_tasks=40",
        "agents.a.max_in_flight=4", "agents.a.sleep_ms=20",
        "agents.b.max_in_flight=3", "agents.b.sleep_ms=20",
        "agents.c.max_in_flight=5", "agents.c.sleep_ms=1",
    )
    assert_exactly_once(records, ids(200))
    assert summary.peak_in_flight == 40  # reached, never exceeded
    caps = {"a": 4, "b": 3, "c": 5}
    for role, replicas in summary.roles.items():
        for rep in replicas:
            assert rep["peak_active"] <= caps[role]
    assert max(rep["peak_active"] for rep in summary.roles["a"]) == 4


def test_agent_exception_fails_only_that_task(matrix_ray, tmp_path):
    summary, records = run(tmp_path, "relay", "dataset.size=100", "+agents.b.fail_every=10")
    assert_exactly_once(records, ids(100))
    failed = [r for r in records if r["status"] == "failed"]
    assert len(failed) == summary.failed == 10
    assert all(r["error"]["type"] == "RuntimeError" and r["error"]["role"] == "b" for r in failed)
    assert all(int(r["row_key"]) % 10 == 0 for r in failed)


def test_max_steps_ends_looping_tasks(matrix_ray, tmp_path):
    summary, records = run(tmp_path, "relay", "dataset.size=20", "laps=5", "run.max_steps=4")
    assert summary.failed == 20
    assert all("max_steps=4" in r["error"]["message"] and r["steps"] == 4 for r in records)


def test_task_timeout_ends_stuck_tasks(matrix_ray, tmp_path):
    summary, records = run(tmp_path, "relay", "dataset.size=10", "agents.b.sleep_ms=5000", "run.task_timeout_s=0.5")
    assert summary.failed == 10
    assert all("task_timeout_s" in r["error"]["message"] and r["error"]["role"] == "b" for r in records)


def test_malformed_rows_are_reported_and_the_run_goes_on(matrix_ray, tmp_path, caplog):
    data = tmp_path / "topics.jsonl"
    data.write_text(
        json.dumps({"id": "ok1", "topic": "tides"}) + "\n"
        + "{not json\n"
        + json.dumps(["a", "list"]) + "\n"
        + json.dumps({"id": "notopic"}) + "\n"
        + json.dumps({"id": "ok2", "topic": "rain"}) + "\n"
    )
    summary, records = run(tmp_path, "dialogue", "llm=fake", f"dataset.path={data}")
    by_id = {r["task_id"]: r for r in records}
    assert_exactly_once(records, ["ok1#0", "2#0", "3#0", "notopic#0", "ok2#0"])
    assert by_id["ok1#0"]["status"] == by_id["ok2#0"]["status"] == "done"
    assert "invalid JSON" in by_id["2#0"]["error"]["message"] and "row 2" in by_id["2#0"]["state"]["dataset_row"]
    assert "expected a JSON object" in by_id["3#0"]["error"]["message"]
    assert "no 'topic'" in by_id["notopic#0"]["error"]["message"]
    assert summary.done == 2 and summary.failed == 3


def test_large_history_travels_through_object_store(matrix_ray, tmp_path):
    # Every role in its own actor: each hop leaves the process, so history over 150 bytes
    # must move to the object store and come back whole when the record is written.
    summary, records = run(
        tmp_path, "relay", "dataset.size=6", "laps=2", "run.colocate=false", "run.offload_threshold_bytes=150",
        *(f"agents.{r}.turn_bytes=100" for r in "abc"),
    )
    assert summary.done == 6
    roles = ["a", "b", "c"] * 2
    for r in records:
        assert [t["content"][:3] for t in r["history"]] == [f"{role}{i}:" for i, role in enumerate(roles, 1)]
        # Hop k sees the k turns added before it; past 150 bytes they travel as segments.
        assert r["state"]["segments_seen"][0] == 0 and max(r["state"]["segments_seen"]) >= 2


def test_existing_output_is_skipped_on_rerun(matrix_ray, tmp_path):
    first, _ = run(tmp_path, "relay", "dataset.size=50")
    second, records = run(tmp_path, "relay", "dataset.size=80")
    assert first.done == 50 and second.done == 30 and second.skipped == 50
    assert_exactly_once(records, ids(80))


def _plasma_objects():
    import re

    from ray._private.internal_api import memory_summary

    import ray

    # Name this session's cluster: other Ray instances on the machine make auto-detection fail.
    summary = memory_summary(address=ray.get_runtime_context().gcs_address, stats_only=True)
    return int(re.search(r"(\d+) objects", summary).group(1))


def test_offloaded_payloads_are_freed_once_written(matrix_ray, tmp_path):
    import time

    data = tmp_path / "big.jsonl"
    # Objects over 100 KB live in the shared object store (smaller ones stay with their owner).
    data.write_text("".join(json.dumps({"id": f"b{i}", "topic": f"{i} " + "x" * 150_000}) + "\n" for i in range(5)))
    before = _plasma_objects()
    summary, records = run(tmp_path, "dialogue", "llm=fake", f"dataset.path={data}", "run.colocate=false", "run.offload_threshold_bytes=65536")
    assert summary.done == 5 and all(len(r["payload"]["topic"]) > 150_000 for r in records)
    deadline = time.time() + 20
    while _plasma_objects() > before and time.time() < deadline:
        time.sleep(0.5)
    assert _plasma_objects() == before


def test_a_dead_host_ends_the_run_with_a_clear_error_not_a_hang(matrix_ray, tmp_path, monkeypatch):
    import threading
    import time

    import pytest
    import ray

    from matrix_core import MatrixError
    from matrix_core._private import driver

    monkeypatch.setattr(driver, "STALL_CHECK_S", 1.0)

    def kill_a_host():
        for _ in range(300):
            hosts = [n for n in ray.util.list_named_actors() if n.startswith("matrix-host-")]
            if hosts:
                time.sleep(1.0)  # let tasks reach it
                ray.kill(ray.get_actor(hosts[0]))
                return
            time.sleep(0.1)

    threading.Thread(target=kill_a_host, daemon=True).start()
    with pytest.raises(MatrixError, match=r"agent host \d died and could not be restarted .* run the same command again"):
        run(tmp_path, "relay", "dataset.size=50", "run.hosts=1", "agents.a.sleep_ms=30000")


def test_retry_failed_reruns_only_failed_tasks_and_replaces_their_lines(matrix_ray, tmp_path):
    first, _ = run(tmp_path, "relay", "dataset.size=40", "+agents.b.fail_every=10")
    assert first.failed == 4
    second, records = run(tmp_path, "relay", "dataset.size=40", "resume.retry_failed=true")
    assert second.done == 4 and second.skipped == 36
    assert_exactly_once(records, ids(40))
    assert all(r["status"] == "done" for r in records)


def test_duplicate_row_ids_are_reported_and_skipped(matrix_ray, tmp_path):
    data = tmp_path / "dup.jsonl"
    data.write_text("".join(json.dumps({"id": k, "topic": "tides"}) + "\n" for k in ["a", "b", "a", "c"]))
    summary, records = run(tmp_path, "dialogue", "llm=fake", f"dataset.path={data}")
    assert summary.duplicate_rows == 1 and summary.done == 3
    assert_exactly_once(records, ["a#0", "b#0", "c#0"])


def test_an_output_of_another_workflow_is_refused_unless_forced(matrix_ray, tmp_path):
    import pytest

    from matrix_core import MatrixError

    run(tmp_path, "relay", "dataset.size=5")
    with pytest.raises(MatrixError, match=r"written by a different run \(.*workflow: 'relay' there, 'dialogue' now.*--force"):
        run(tmp_path, "dialogue", "llm=fake", "dataset.limit=2")
    summary, records = run(tmp_path, "dialogue", "llm=fake", "dataset.limit=2", "run.force=true")
    assert summary.done == 2 and len(records) == 7


def test_a_second_run_on_the_same_output_is_refused_while_the_first_writes(tmp_path):
    import asyncio

    from matrix_core import MatrixError
    from matrix_core._private.sink_actor import SinkActorImpl
    from matrix_plugin_jsonl import JsonlSink

    config = {"path": str(tmp_path / "out.jsonl")}
    first = SinkActorImpl(JsonlSink, config)
    asyncio.run(first.open())
    with pytest.raises(MatrixError, match="is being written by another run"):
        asyncio.run(SinkActorImpl(JsonlSink, config).open())
    asyncio.run(first.close())
    asyncio.run(SinkActorImpl(JsonlSink, config).open())  # free again once the first is done
