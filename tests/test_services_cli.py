"""`matrix services` on a throwaway `ray start --head` cluster: Ray Serve deployments of the
embedded llama.cpp model that outlive each command, autoscaled by Serve, shared by two runs
at once, and stopped without leaving a process behind."""
import asyncio
import json
import subprocess
import time

import httpx
import psutil
import pytest

from matrix_core.testing import ThrowawayRayHead, assert_exactly_once, read_records

llamacpp = pytest.importorskip("matrix_plugin_llamacpp")


def needs_cluster(test):
    """A test on the module's throwaway cluster with the embedded model."""
    for mark in (pytest.mark.slow, pytest.mark.llm,
                 pytest.mark.skipif(llamacpp._bundled_model_dir() is None, reason=f"model not installed: {llamacpp.INSTALL}")):
        test = mark(test)
    return test

# Small replicas (2 cores on CI): 2 slots, 1 thread; Serve's autoscaler reacts within seconds.
SMALL = ["llm=llamacpp", "llm.threads=1", "llm.n_parallel=2", "llm.ctx_size=1024"]
AUTOSCALE = ["llm.deployment.min_replicas=1", "llm.deployment.max_replicas=2", "llm.deployment.target_ongoing_requests=1",
             "llm.deployment.upscale_delay_s=1", "llm.deployment.downscale_delay_s=4",
             "+llm.deployment.autoscaling.look_back_period_s=2", "llm.deployment.health_check_period_s=2"]


def matrix(*args, env=None, timeout=600):
    return subprocess.run(["matrix", *args], capture_output=True, text=True, timeout=timeout, env=env)


def one_error_line(proc):
    lines = [line for line in proc.stderr.splitlines() if line.startswith("matrix: error:")]
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    return lines[0]


def _up(head, env, address) -> bool:
    """The head accepts clients (False: it exited; on a loaded box Ray gives its node 30 s to come up)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and head.head.poll() is None:
        if matrix("services", "list", "--address", address, env=env).returncode == 0:
            return True
        time.sleep(2)
    return False


def _end(head) -> None:
    try:
        head.__exit__(None, None, None)
    except ProcessLookupError:  # it had exited on its own
        pass


@pytest.fixture(scope="module")
def cluster():
    """(env, address) of a head node this module owns (4 logical CPUs: two runs' agent hosts)."""
    for _ in range(3):
        head = ThrowawayRayHead(num_cpus=4)
        env, address = head.__enter__()
        try:
            if _up(head, env, address):
                break
        except BaseException:
            _end(head)
            raise
        _end(head)
    else:
        pytest.fail("the throwaway Ray head did not come up in three tries")
    try:
        yield env, address
    finally:
        _end(head)


def status(name, env, address):
    proc = matrix("services", "status", name, "--json", "--address", address, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


async def _load(url: str, model: str, stop: asyncio.Event, concurrency: int = 6) -> int:
    done = 0

    async def worker(client):
        nonlocal done
        while not stop.is_set():
            r = await client.post(url, json={"model": model, "messages": [{"role": "user", "content": "Tell me a long story."}],
                                             "max_tokens": 96})
            assert r.status_code == 200, r.text
            done += 1

    async with httpx.AsyncClient(timeout=300, trust_env=False) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return done


@needs_cluster
def test_llamacpp_service_autoscales_up_under_load_and_back_down(cluster):
    env, address = cluster
    proc = matrix("services", "start", "smol", *SMALL, *AUTOSCALE, "--address", address, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "service smol started (llamacpp, model SmolLM2-135M-Instruct, replicas 1..2)" in proc.stdout
    row = status("smol", env, address)
    assert (row["wanted"], row["running"], row["health"]) == (1, 1, "healthy")

    async def drive():
        stop = asyncio.Event()
        load = asyncio.create_task(_load(row["base_url"] + "/chat/completions", row["model"], stop))
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:  # replica counts as Serve reports them
                seen = await asyncio.to_thread(status, "smol", env, address)
                if seen["running"] == 2:
                    return seen
                assert not load.done(), load.exception()
            pytest.fail(f"Serve did not scale smol to 2 replicas under load: {seen}")
        finally:
            stop.set()
            assert await load > 0

    up = asyncio.run(drive())
    assert up["wanted"] == 2 and len({r["pid"] for r in up["replicas"] if r["state"] == "RUNNING"}) == 2

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # idle: back to min_replicas
        down = status("smol", env, address)
        if down["wanted"] == 1 and down["running"] == 1:
            break
    else:
        pytest.fail(f"Serve did not scale smol back to 1 replica when idle: {down}")

    proc = matrix("services", "check", "smol", "--address", address, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS  chat" in proc.stdout and "PASS  json schema" in proc.stdout

    proc = matrix("services", "scale", "smol", "min=2", "max=2", "--address", address, env=env)
    assert proc.returncode == 0 and "replicas 2..2" in proc.stdout, proc.stderr
    deadline = time.monotonic() + 300
    while (row := status("smol", env, address))["running"] != 2:
        assert time.monotonic() < deadline, row
    assert (row["min_replicas"], row["max_replicas"]) == (2, 2)
    pids = [r["pid"] for r in row["replicas"]]
    assert "service smol stopped" in matrix("services", "stop", "smol", "--address", address, env=env).stdout
    _assert_gone(pids)


def _assert_gone(pids):
    deadline = time.monotonic() + 60
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids):
        assert time.monotonic() < deadline, f"replica processes still alive: {[p for p in pids if psutil.pid_exists(p)]}"
        time.sleep(0.5)


def topic_ids(limit):
    from importlib.resources import files

    from matrix_core import task_id_for

    lines = files("matrix_plugin_dialogue").joinpath("data/topics.jsonl").read_text().splitlines()
    return [task_id_for(json.loads(line)["id"], 0) for line in lines if line.strip()][:limit]


@needs_cluster
def test_two_runs_share_one_deployment_at_once(cluster, tmp_path):
    env, address = cluster
    proc = matrix("services", "start", "shared", *SMALL, "--address", address, env=env)
    assert proc.returncode == 0, proc.stderr
    before = status("shared", env, address)

    outs = [tmp_path / f"run{i}.jsonl" for i in (1, 2)]
    runs = [subprocess.Popen(["matrix", "run", "dialogue", "+llms.talker=service:shared", "agents.questioner.llm=talker",
                              "agents.answerer.llm=talker", "llm=fake", "dataset.limit=3", "rounds=1", "run.progress=off",
                              f"output.path={out}", "--address", address],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for out in outs]
    for run in runs:
        stdout, stderr = run.communicate(timeout=900)
        assert run.returncode == 0, stdout + stderr
        assert "3 done, 0 failed" in stdout, stdout
    for out in outs:
        records = read_records(out)
        assert_exactly_once(records, topic_ids(3))
        assert all(t["model"] == "SmolLM2-135M-Instruct" for r in records for t in r["history"] if t.get("role") == "assistant")

    after = status("shared", env, address)  # neither run stopped it
    assert after["health"] == "healthy" and after["replicas"] == before["replicas"]
    assert "PASS  chat" in matrix("services", "check", "shared", "--address", address, env=env).stdout
    pids = [r["pid"] for r in after["replicas"]]
    assert "service shared stopped" in matrix("services", "stop", "shared", "--address", address, env=env).stdout
    _assert_gone(pids)
    assert "no services" in matrix("services", "list", "--address", address, env=env).stdout


@needs_cluster
def test_bad_service_commands_are_one_clear_line(cluster, tmp_path):
    env, address = cluster
    assert "unknown service 'ghost'; running on this Ray cluster: none" in one_error_line(
        matrix("services", "stop", "ghost", "--address", address, env=env))
    line = one_error_line(matrix("services", "start", "big", "llm=simllm", "llm.deployment.num_gpus=4", "--address", address, env=env))
    assert "needs 1 replica(s) of 4 GPU each, but the Ray cluster holds 0: it has 0 GPU in all" in line
    bogus = tmp_path / "broken.gguf"
    bogus.write_bytes(b"GGUF but not a model" * 64)
    line = one_error_line(matrix("services", "start", "broken", *SMALL, f"llm.model_path={bogus}", "--address", address, env=env))
    assert "deployment 'broken' failed" in line and "engine log:" in line and "llama" in line.split("engine log:")[1].lower()

    assert matrix("services", "start", "sim1", "llm=simllm", "llm.time_scale=50", "--address", address, env=env).returncode == 0
    assert "service 'sim1' already exists" in one_error_line(matrix("services", "start", "sim1", "llm=simllm", "--address", address, env=env))
    assert "unknown service 'nope'; running on this Ray cluster: sim1 (simllm)" in one_error_line(
        matrix("run", "dialogue", "llm=service", "llm.name=nope", "--address", address, env=env))
    rows = json.loads(matrix("services", "list", "--json", "--address", address, env=env).stdout)
    assert [r["name"] for r in rows] == ["sim1"]  # nothing left of the failed starts
    assert matrix("services", "stop", "sim1", "--address", address, env=env).returncode == 0



@pytest.mark.parametrize("args, message", [
    (["start", "f", "llm=fake"], "llm backend 'fake' cannot run as a service (it has no Ray Serve deployment)"),
    (["start", "x", "llm=simllm", "run.hosts=2"], "takes llm overrides only"),
    (["start", "x", "llm.replicas=2"], "name the backend"),
    (["start", "x", "llm=simllm", "llm.nokey=1"], "Could not override 'llm.nokey'"),
    (["start", "x", "llm=simllm", "llm.deployment.min_replicas=3", "llm.deployment.max_replicas=2"],
     "llm.deployment: min_replicas=3 is above max_replicas=2"),
    (["start", "run-1", "llm=simllm"], "names starting with 'run-' are kept for the deployments of runs"),
    (["scale", "x", "min=1", "size=3"], "'size=3' is not min=N, max=N or target=N"),
    (["list"], "needs a running Ray cluster"),
])
def test_bad_input_before_any_cluster_is_one_line(args, message, monkeypatch):
    """Checked before joining a cluster, so in-process (no Ray)."""
    from click.testing import CliRunner

    from matrix_core.cli import main

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    result = CliRunner().invoke(main, ["services", *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("matrix: error:") and message in lines[0], result.output
