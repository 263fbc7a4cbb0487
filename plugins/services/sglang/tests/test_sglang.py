"""The sglang backend without SGLang or a GPU: a run deploys it on Ray Serve
(tests/test_sglang_serve.py builds that application); ``start`` only attaches by URL, here to
the vllm plugin's stand-in server, a test double for a running SGLang (same OpenAI API)."""
from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import matrix_plugin_sglang as plugin
import pytest

from matrix_core import ConfigError, LLMClient, MatrixError

_spec = importlib.util.spec_from_file_location("standin_server", Path(__file__).resolve().parents[2] / "vllm" / "tests" / "standin_server.py")
standin = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(standin)


def test_attach_by_url_to_a_standin_sglang(monkeypatch):
    monkeypatch.setenv("STANDIN_SGLANG_KEY", "sk-test")  # the stand-in ignores it; the endpoint carries it
    with standin.running("qwen") as (url, server):
        handle = plugin.start_sglang({"base_url": url, "model": "Qwen/Qwen2.5-7B-Instruct", "served_model_name": "qwen",
                                      "api_key_env": "STANDIN_SGLANG_KEY"})
        [endpoint] = handle.endpoints
        assert (endpoint.base_url, endpoint.model, endpoint.api_key) == (url, "qwen", "sk-test")

        async def go():
            client = LLMClient([endpoint], max_retries=0)
            try:
                return await client.chat([{"role": "user", "content": "hi"}])
            finally:
                await client.aclose()

        assert asyncio.run(go()).content == "echo: hi"
        handle.stop()  # not ours: left running
        assert server.poll() is None
    with pytest.raises(MatrixError, match=f"LLM endpoint {url} does not answer"):
        plugin.start_sglang({"base_url": url, "model": "qwen"})


def test_start_without_base_url_says_it_deploys_on_serve():
    with pytest.raises(ConfigError, match=r"^llm=sglang is deployed on Ray Serve .*matrix services start NAME llm=sglang.*: set llm.base_url"):
        plugin.start_sglang({"model": "m"})


def test_a_run_deploys_sglang_on_serve_and_a_gpu_less_cluster_refuses_it(matrix_ray, tmp_path):
    """`matrix run` with llm=sglang deploys a Ray Serve application; this cluster has no GPU, so
    the run is refused before anything is deployed, with the numbers (tp 2 x pp 2: four GPUs)."""
    import matrix_core

    with pytest.raises(MatrixError, match=r"needs 1 replica\(s\) of 1 CPU, 4 GPU each, but the Ray cluster holds 0"):
        matrix_core.run("dialogue", ["llm=sglang", "llm.model=Qwen/Qwen2.5-7B-Instruct", "llm.tensor_parallel_size=2",
                                     "llm.pipeline_parallel_size=2", "llm.deployment.num_gpus=4",
                                     f"output.path={tmp_path / 'd.jsonl'}", "dataset.limit=2", "run.progress=off"])
