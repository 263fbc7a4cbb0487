"""The sglang backend without SGLang or a GPU: its command line and Ray requests as built, and
one launch through the shared launcher with the stand-in server. The launcher's health
timeout, teardown and attach paths are covered in the vllm plugin's tests."""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import matrix_plugin_sglang as plugin
import psutil
import pytest

from matrix_core import LLMClient, MatrixError
from matrix_core._private.launcher import actor_options, server_spec

# One stand-in for both engines: it takes vLLM's and SGLang's flags.
STANDIN = str(Path(__file__).resolve().parents[2] / "vllm" / "tests" / "standin_server.py")


def spec(**cfg):
    return server_spec({**plugin.defaults(), **cfg}, engine="sglang", package="sglang", engine_args=plugin.engine_args)


def test_command_line_and_resources():
    s = spec(model="Qwen/Qwen2.5-7B-Instruct", tensor_parallel_size=2, served_model_name="qwen", max_running_requests=128,
             mem_fraction_static=0.8, host="0.0.0.0", port=30000, extra_args=["--context-length", 8192])
    assert s.argv == (
        "python", "-m", "sglang.launch_server", "--model-path", "Qwen/Qwen2.5-7B-Instruct", "--tp", "2",
        "--host", "0.0.0.0", "--port", "{port}", "--served-model-name", "qwen",
        "--max-running-requests", "128", "--mem-fraction-static", "0.8", "--context-length", "8192",
    )
    assert (s.model, s.package, s.port) == ("qwen", "sglang", 30000)
    options = actor_options(s, None)
    assert (options["num_gpus"], options["num_cpus"]) == (2, 1) and "scheduling_strategy" not in options


def test_no_gpu_in_test_cluster(matrix_ray):
    with pytest.raises(MatrixError, match=r"^sglang needs 1 GPU\(s\) per replica \(tensor_parallel_size=1\) but .* has no GPU$"):
        plugin.start_sglang({"model": "m"})


def test_engine_not_installed(matrix_ray):
    with pytest.raises(MatrixError, match="^sglang is not installed in the Ray worker environment on .*: pip install sglang$"):
        plugin.start_sglang({"model": "m", "num_gpus": 0, "num_cpus": 0})


def test_launch_chat_and_teardown(matrix_ray, tmp_path):
    cfg = {"model": "org/standin", "launcher": ["python", STANDIN], "num_gpus": 0, "num_cpus": 0, "startup_timeout_s": 60,
           "env": {"STANDIN_ARGV_DIR": str(tmp_path)}}
    handle = plugin.start_sglang(cfg)
    try:
        replica = handle.info["replicas"][0]
        assert json.loads((tmp_path / f"{replica['port']}.json").read_text()) == [
            "--model-path", "org/standin", "--tp", "1", "--host", "127.0.0.1", "--port", str(replica["port"])]

        async def go():
            client = LLMClient(handle.endpoints, max_retries=0)
            try:
                return await client.chat([{"role": "user", "content": "hi"}])
            finally:
                await client.aclose()

        assert asyncio.run(go()).content == "echo: hi"
    finally:
        handle.stop()
    deadline = time.monotonic() + 10
    while psutil.pid_exists(replica["pid"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not psutil.pid_exists(replica["pid"])
