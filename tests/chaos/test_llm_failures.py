"""LLM faults and an LLM server that dies and comes back, on the simulated LLM (simllm):
retries absorb what they can, the rest fail with the reason, every task is written once."""
import json
import socket
import threading
import time

import pytest
import ray

import matrix_core
from matrix_core.testing import assert_exactly_once, read_records

from .conftest import lines_in

simllm = pytest.importorskip("matrix_plugin_simllm")
from matrix_plugin_simllm.server import SimLLMReplica  # noqa: E402

TRIALS = 84  # 24 topics x 84 trials = 2,016 dialogues of one round (2 LLM calls each)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port, **faults):
    """One simllm replica on a fixed port (so a replacement can take its place)."""
    settings = simllm.settings({
        "time_scale": 50, "max_num_seqs": 512, "output_tokens": {"dist": "uniform", "min": 4, "max": 24},
        "faults": {"retry_after_s": 0.05, **faults}, "seed": 11,
    })
    actor = ray.remote(SimLLMReplica).options(num_cpus=0).remote(settings, 0)
    info = ray.get(actor.start.remote("127.0.0.1", port))
    assert "error" not in info, info
    return actor


def run_dialogue(out, port, *extra):
    return matrix_core.run("dialogue", [
        "llm=endpoint", f"llm.base_url=http://127.0.0.1:{port}/v1", f"output.path={out}", "run.progress=off",
        f"run.trials={TRIALS}", "rounds=1", "run.max_concurrent_tasks=512", "run.hosts=2",
        "agents.questioner.max_in_flight=512", "agents.answerer.max_in_flight=512",
        "llm.client.max_concurrency_per_endpoint=512", "llm.client.backoff_base_s=0.1", "llm.client.backoff_max_s=2", *extra,
    ])


def expected_ids():
    topics = [json.loads(l)["id"] for l in open(matrix_core.config._package_file("matrix_plugin_dialogue/data/topics.jsonl"))]
    return [f"{t}#{trial}" for t in topics for trial in range(TRIALS)]


def test_faults_and_a_server_restart_are_absorbed_by_retries(matrix_ray, tmp_path):
    port, out = free_port(), tmp_path / "out.jsonl"
    servers = [start_server(port, rate_429=0.03, rate_500=0.03, rate_timeout=0.003)]
    injected = {}

    def restart_server():
        ready = lines_in(out, 300)
        deadline = time.time() + 120
        while not ready() and time.time() < deadline:
            time.sleep(0.05)
        for k, v in ray.get(servers[0].stats.remote())["injected"].items():
            injected[k] = injected.get(k, 0) + v
        ray.kill(servers[0])  # the LLM server dies with requests in flight ...
        time.sleep(1.5)
        servers.append(start_server(port, rate_429=0.03, rate_500=0.03, rate_timeout=0.003))  # ... and comes back

    restarter = threading.Thread(target=restart_server)
    restarter.start()
    try:
        summary = run_dialogue(out, port, "llm.client.max_retries=10", "llm.client.timeout_s=2")
    finally:
        restarter.join()
        for k, v in ray.get(servers[-1].stats.remote())["injected"].items():
            injected[k] = injected.get(k, 0) + v
        for s in servers:
            ray.kill(s)
    records = read_records(out)
    print(f"\n{summary.text()}")  # the chaos numbers, in CI's log with -s or on failure
    assert_exactly_once(records, expected_ids())
    assert len(servers) == 2, "the server should have been restarted mid-run"
    assert injected.get("429", 0) > 0 and injected.get("500", 0) > 0 and injected.get("timeout", 0) > 0
    # 10 retries against a ~6% fault rate and a 1.5 s outage: every task gets through.
    assert summary.done == len(records) and summary.failed == 0


def test_without_retries_each_injected_fault_fails_exactly_one_task(matrix_ray, tmp_path):
    port, out = free_port(), tmp_path / "out.jsonl"
    server = start_server(port, rate_500=0.02, rate_429=0.01)
    try:
        summary = run_dialogue(out, port, "llm.client.max_retries=0")
        stats = ray.get(server.stats.remote())
    finally:
        ray.kill(server)
    records = read_records(out)
    print(f"\n{summary.text()}")  # the chaos numbers, in CI's log with -s or on failure
    assert_exactly_once(records, expected_ids())
    failed = [r for r in records if r["status"] == "failed"]
    # A failed call ends its task, which then makes no more calls: one fault, one failed task.
    assert len(failed) == summary.failed == stats["injected"]["500"] + stats["injected"]["429"] > 0
    assert all(("HTTP 500" in r["error"]["message"] or "HTTP 429" in r["error"]["message"]) for r in failed)
    assert summary.done == len(records) - len(failed)
