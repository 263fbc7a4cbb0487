"""`matrix services` on a throwaway `ray start --head` cluster: start, list, share, stop."""
import json
import subprocess
import time

import httpx
import pytest

from matrix_core.testing import ThrowawayRayHead, assert_exactly_once, read_records

pytest.importorskip("matrix_plugin_simllm")
pytestmark = pytest.mark.slow


def matrix(*args, env=None, timeout=300):
    return subprocess.run(["matrix", *args], capture_output=True, text=True, timeout=timeout, env=env)


def one_error_line(proc):
    lines = [l for l in proc.stderr.splitlines() if l.startswith("matrix: error:")]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def cluster():
    """(env, address) of a head node this module owns."""
    with ThrowawayRayHead() as (env, address):
        for _ in range(30):  # the head takes a few seconds to accept clients
            proc = matrix("services", "list", "--address", address, env=env)
            if proc.returncode == 0:
                break
            time.sleep(2)
        assert proc.returncode == 0, proc.stderr
        yield env, address


def topic_ids():
    from importlib.resources import files

    from matrix_core import task_id_for

    lines = files("matrix_plugin_dialogue").joinpath("data/topics.jsonl").read_text().splitlines()
    return [task_id_for(json.loads(line)["id"], 0) for line in lines if line.strip()]


def received(endpoints) -> int:
    total = 0
    for e in endpoints:
        for line in httpx.get(e["base_url"][:-3] + "/metrics").text.splitlines():
            if line.startswith("simllm_requests_received_total"):
                total += int(float(line.rsplit(" ", 1)[1]))
    return total


def test_service_is_started_listed_shared_by_runs_and_stopped(cluster, tmp_path):
    env, address = cluster
    proc = matrix("services", "start", "sim1", "llm=simllm", "llm.replicas=2", "llm.time_scale=20", "--address", address, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "service sim1 started (simllm)" in proc.stdout

    [record] = json.loads(matrix("services", "list", "--json", "--address", address, env=env).stdout)
    assert record["name"] == "sim1" and record["backend"] == "simllm" and record["healthy"]
    assert len(record["endpoints"]) == 2 and record["config"]["replicas"] == 2
    text = matrix("services", "list", "--address", address, env=env).stdout
    assert "sim1" in text and "healthy" in text

    assert "service 'sim1' already exists" in one_error_line(
        matrix("services", "start", "sim1", "llm=simllm", "--address", address, env=env))
    assert "unknown service 'nope'; known on this Ray cluster: sim1" in one_error_line(
        matrix("run", "dialogue", "llm=service", "llm.name=nope", "--address", address, env=env))

    # Two runs, one after the other, on the same servers: the second finds them still up.
    for i in (1, 2):
        out = tmp_path / f"run{i}.jsonl"
        proc = matrix("run", "dialogue", "llm=service", "llm.name=sim1", f"output.path={out}", "run.progress=off",
                      "--address", address, env=env)
        assert proc.returncode == 0, proc.stderr
        assert "24 done, 0 failed" in proc.stdout
        assert_exactly_once(read_records(out), topic_ids())
    assert received(record["endpoints"]) >= 2 * 96  # 96 calls a run, all served by sim1

    proc = matrix("services", "stop", "sim1", "--address", address, env=env)
    assert proc.returncode == 0 and "service sim1 stopped" in proc.stdout, proc.stderr
    assert "no services" in matrix("services", "list", "--address", address, env=env).stdout
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # the actors are killed: their ports close
        try:
            httpx.get(record["endpoints"][0]["base_url"][:-3] + "/health", timeout=1)
        except httpx.ConnectError:
            break
        time.sleep(0.2)
    else:
        pytest.fail("sim1's server still answers after stop")


def test_bad_service_commands_are_one_clear_line(cluster):
    env, address = cluster
    assert "unknown service 'ghost'; known on this Ray cluster: none" in one_error_line(
        matrix("services", "stop", "ghost", "--address", address, env=env))
    assert "cannot run as a service" in one_error_line(
        matrix("services", "start", "f", "llm=fake", "--address", address, env=env))
    assert "no services" in matrix("services", "list", "--address", address, env=env).stdout  # nothing left behind
    assert "takes llm overrides only" in one_error_line(matrix("services", "start", "x", "llm=simllm", "run.hosts=2", env=env))
    assert "name the backend" in one_error_line(matrix("services", "start", "x", "llm.replicas=2", env=env))
    assert "Could not override 'llm.nokey'" in one_error_line(matrix("services", "start", "x", "llm=simllm", "llm.nokey=1", env=env))
    no_address = {k: v for k, v in env.items() if k != "RAY_ADDRESS"}
    assert "needs a running Ray cluster" in one_error_line(matrix("services", "list", env=no_address))
