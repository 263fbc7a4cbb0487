"""The vllm backend and the shared launcher (matrix_core._private.launcher), without vLLM or a GPU:
the command line and Ray requests are checked as built, and the launch path runs for real with
a stand-in server (standin_server.py) in the replicas' actors."""
from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import matrix_plugin_vllm as plugin
import psutil
import pytest

from matrix_core import ConfigError, LLMClient, MatrixError
from matrix_core._private.launcher import actor_options, check_resources, server_spec

STANDIN = str(Path(__file__).with_name("standin_server.py"))
NODE = "ab" * 28  # a well-formed Ray node id


def spec(**cfg):
    return server_spec({**plugin.defaults(), **cfg}, engine="vllm", package="vllm", engine_args=plugin.engine_args)


def standin(**cfg):
    """Config that launches the stand-in on CPU; a unique model name finds its processes."""
    return {"model": f"standin-{uuid.uuid4().hex[:8]}", "launcher": ["python", STANDIN, "serve"], "num_gpus": 0, "num_cpus": 0, "startup_timeout_s": 60, **cfg}


def processes_with(token: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        if any(token in part for part in p.info["cmdline"] or []):
            found.append(p)
    return found


def gone(pids, timeout=10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids):
            return True
        time.sleep(0.2)
    return False


def chat(endpoints, text="hi"):
    """One reply from each endpoint."""

    async def one(endpoint):
        client = LLMClient([endpoint], timeout_s=120, max_retries=0)
        try:
            return await client.chat([{"role": "user", "content": text}], max_tokens=16)
        finally:
            await client.aclose()

    async def go():
        return await asyncio.gather(*(one(e) for e in endpoints))

    return asyncio.run(go())


def test_command_line():
    s = spec(model="meta-llama/Llama-3.1-8B-Instruct", tensor_parallel_size=2, served_model_name="llama", max_num_seqs=64,
             gpu_memory_utilization=0.85, extra_args=["--max-model-len", 8192])
    assert s.argv == (
        "python", "-m", "vllm.entrypoints.cli.main", "serve", "meta-llama/Llama-3.1-8B-Instruct",
        "--tensor-parallel-size", "2", "--host", "127.0.0.1", "--port", "{port}",
        "--served-model-name", "llama", "--max-num-seqs", "64", "--gpu-memory-utilization", "0.85",
        "--max-model-len", "8192",
    )
    assert (s.model, s.package, s.num_gpus, s.num_cpus) == ("llama", "vllm", 2, 1)
    legacy = spec(model="m", launcher=["python", "-m", "vllm.entrypoints.openai.api_server"])
    assert legacy.argv[3:5] == ("--model", "m") and legacy.package == "vllm"
    assert spec(model="m", launcher=["/opt/vllm/bin/vllm", "serve"]).package is None  # a binary: checked on PATH instead


def test_bad_config():
    with pytest.raises(ConfigError, match="llm.model is not set"):
        plugin.start_vllm({})
    with pytest.raises(ConfigError, match="at least 1"):
        spec(model="m", tensor_parallel_size=0)
    with pytest.raises(ConfigError, match="launcher must be a non-empty list"):
        spec(model="m", launcher="vllm serve")


def test_actor_options():
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    s = spec(model="m", tensor_parallel_size=4, resources={"accelerator_type:H100": 0.001})
    options = actor_options(s, NODE)
    assert (options["num_gpus"], options["num_cpus"], options["resources"]) == (4, 1, {"accelerator_type:H100": 0.001})
    assert isinstance(options["scheduling_strategy"], NodeAffinitySchedulingStrategy)
    assert options["scheduling_strategy"].node_id == NODE and not options["scheduling_strategy"].soft
    assert "scheduling_strategy" not in actor_options(spec(model="m", host="0.0.0.0"), NODE)
    assert actor_options(spec(model="m", tensor_parallel_size=2, num_gpus=1), NODE)["num_gpus"] == 1


def test_check_resources():
    def node(**resources):
        return {"Alive": True, "Resources": {"CPU": 16, **resources}}

    with pytest.raises(MatrixError, match=r"needs 2 GPU\(s\) per replica \(tensor_parallel_size=2\) but the Ray cluster has no GPU"):
        check_resources(spec(model="m", tensor_parallel_size=2, host="0.0.0.0"), [node(), node()])
    with pytest.raises(MatrixError, match="can hold 1 of 2 vllm replica"):
        check_resources(spec(model="m", tensor_parallel_size=4, replicas=2, host="0.0.0.0"), [node(GPU=4), node(GPU=2)])
    check_resources(spec(model="m", tensor_parallel_size=2, replicas=3, host="0.0.0.0"), [node(GPU=4), node(GPU=2)])
    with pytest.raises(MatrixError, match="can hold 0 of 1"):
        check_resources(spec(model="m", resources={"fake_accel": 1}, num_gpus=0), [node(GPU=8)])
    check_resources(spec(model="m", resources={"fake_accel": 1}, num_gpus=0), [node(fake_accel=2)])


def test_no_gpu_in_test_cluster(matrix_ray):
    with pytest.raises(MatrixError, match=r"driver's Ray node .* has no GPU"):
        plugin.start_vllm({"model": "m", "tensor_parallel_size": 2})


def test_engine_not_installed(matrix_ray):
    with pytest.raises(MatrixError, match="^vllm is not installed in the Ray worker environment on .*: pip install vllm$"):
        plugin.start_vllm({"model": "m", "num_gpus": 0, "num_cpus": 0})


def test_launch_chat_and_teardown(matrix_ray, tmp_path):
    cfg = standin(replicas=2, served_model_name="served", env={"STANDIN_ARGV_DIR": str(tmp_path), "STANDIN_CHILD": str(tmp_path)})
    handle = plugin.start_vllm(cfg)
    try:
        replicas = handle.info["replicas"]
        urls = [e.base_url for e in handle.endpoints]
        assert urls == [f"http://127.0.0.1:{r['port']}/v1" for r in replicas] and len(set(urls)) == 2
        assert all(e.model == "served" for e in handle.endpoints)
        assert handle.info["options"] == {"num_cpus": 0, "num_gpus": 0, "max_restarts": 0, "max_concurrency": 1}
        for r in replicas:
            received = json.loads((tmp_path / f"{r['port']}.json").read_text())
            assert received == ["serve", cfg["model"], "--tensor-parallel-size", "1", "--host", "127.0.0.1", "--port", str(r["port"]), "--served-model-name", "served"]
        assert [r.content for r in chat(handle.endpoints)] == ["echo: hi", "echo: hi"]
        children = [int((tmp_path / f"{r['port']}.child").read_text()) for r in replicas]
        assert all(psutil.pid_exists(c) for c in children)
    finally:
        handle.stop()
    assert gone([r["pid"] for r in replicas] + children)
    assert not processes_with(cfg["model"])
    for url in urls:
        with pytest.raises(httpx.ConnectError):
            httpx.get(url.replace("/v1", "/health"), timeout=2)
    handle.stop()  # twice is harmless


def test_health_timeout_carries_log_tail(matrix_ray):
    cfg = standin(startup_timeout_s=10, env={"STANDIN_DELAY_S": "120"})  # 10 s: a busy machine starts Ray workers slowly
    with pytest.raises(MatrixError) as err:
        plugin.start_vllm(cfg)
    message = str(err.value)
    assert "\n" not in message
    assert "was not ready within" in message and f"last log lines: standin: loading {cfg['model']}" in message
    assert gone([p.pid for p in processes_with(cfg["model"])], timeout=10)


def test_server_exits_early(matrix_ray):
    cfg = standin(env={"STANDIN_EXIT": "CUDA out of memory"})
    with pytest.raises(MatrixError, match="exited with code 3 before it was ready; last log lines: .*standin: CUDA out of memory") as err:
        plugin.start_vllm(cfg)
    log = Path(re.search(r"full log: (\S+) on ", str(err.value)).group(1))
    assert "CUDA out of memory" in log.read_text()  # a server that died on its own keeps its log
    log.unlink()


def test_stop_escalates_to_sigkill(matrix_ray):
    handle = plugin.start_vllm(standin(stop_timeout_s=1, env={"STANDIN_IGNORE_TERM": "1"}))
    pid = handle.info["replicas"][0]["pid"]
    started = time.monotonic()
    handle.stop()
    assert gone([pid], timeout=5) and time.monotonic() - started < 15


def test_killed_actor_takes_its_server(matrix_ray):
    """Ray SIGKILLs actors (owner gone, ray.kill): the server must not outlive its actor."""
    handle = plugin.start_vllm(standin())
    pid = handle.info["replicas"][0]["pid"]
    psutil.Process(pid).parent().kill()  # the actor's worker process
    assert gone([pid], timeout=10)
    handle.stop()  # the actor is gone: logs, does not raise
    Path(handle.info["replicas"][0]["log"]).unlink()  # nobody was left to remove it


def test_attach_by_url(matrix_ray):
    port = free_port()
    server = subprocess.Popen([sys.executable, STANDIN, "served-elsewhere", "--port", str(port)])
    try:
        url = f"http://127.0.0.1:{port}/v1"
        wait_http(url + "/models")
        handle = plugin.start_vllm({"base_url": [url], "model": "served-elsewhere"})
        assert [(e.base_url, e.model) for e in handle.endpoints] == [(url, "served-elsewhere")]
        assert chat(handle.endpoints)[0].content == "echo: hi"
        handle.stop()  # not ours: left running
        assert server.poll() is None
        with pytest.raises(ConfigError, match="not served"):
            plugin.start_vllm({"base_url": url, "model": "other"})
    finally:
        server.terminate()
        server.wait()


@pytest.mark.llm
def test_launch_real_llamacpp_server(matrix_ray):
    """The full path against a real OpenAI-compatible server: llama.cpp serving SmolLM2."""
    pytest.importorskip("xllamacpp")
    import matrix_plugin_llamacpp

    if matrix_plugin_llamacpp._bundled_model_dir() is None:
        pytest.skip(f"model not installed: {matrix_plugin_llamacpp.INSTALL}")
    handle = plugin.start_vllm(standin(model="smollm2", env={"STANDIN_LLAMACPP": "1"}))
    try:
        result = chat(handle.endpoints, "Name a colour.")[0]
        assert result.content and result.usage.completion_tokens > 0
    finally:
        handle.stop()
    assert gone([handle.info["replicas"][0]["pid"]])


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)



def test_a_run_deploys_vllm_on_serve_and_a_gpu_less_cluster_refuses_it(matrix_ray, tmp_path):
    """`matrix run` with llm=vllm deploys a Ray Serve application for the run (ray.serve.llm,
    tests/test_vllm_serve.py); this cluster has no GPU, so the run is refused before anything is
    deployed, with the numbers (tp 2: two GPUs per replica)."""
    import matrix_core

    with pytest.raises(MatrixError, match=r"needs 1 replica\(s\) of 1 CPU, 2 GPU each, but the Ray cluster holds 0"):
        matrix_core.run("dialogue", ["llm=vllm", "llm.model=Qwen/Qwen2.5-7B-Instruct", "llm.tensor_parallel_size=2",
                                     f"output.path={tmp_path / 'd.jsonl'}", "dataset.limit=2", "run.progress=off"])
