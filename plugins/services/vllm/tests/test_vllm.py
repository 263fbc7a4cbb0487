"""The vllm backend without vLLM or a GPU: a run deploys it on Ray Serve (tests/test_vllm_serve.py
builds that application); ``start`` only attaches by URL, here to a stand-in server
(standin_server.py), a test double for a running vLLM."""
from __future__ import annotations

import asyncio
import json
import importlib.util
from pathlib import Path

import matrix_plugin_vllm as plugin
import pytest

from matrix_core import ConfigError, LLMClient, MatrixError

_spec = importlib.util.spec_from_file_location("standin_server", Path(__file__).with_name("standin_server.py"))
standin = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(standin)


def chat(endpoint, text="hi"):
    async def go():
        client = LLMClient([endpoint], timeout_s=120, max_retries=0)
        try:
            return await client.chat([{"role": "user", "content": text}], max_tokens=16)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_attach_by_url_to_a_standin_vllm():
    with standin.running("served-elsewhere") as (url, server):
        handle = plugin.start_vllm({"base_url": [url], "model": "org/weights", "served_model_name": "served-elsewhere"})
        assert [(e.base_url, e.model) for e in handle.endpoints] == [(url, "served-elsewhere")]
        assert chat(handle.endpoints[0]).content == "echo: hi"
        handle.stop()  # not ours: left running
        assert server.poll() is None
        with pytest.raises(ConfigError, match="model 'other' is not served at .*; it serves: served-elsewhere"):
            plugin.start_vllm({"base_url": url, "model": "other"})


def test_a_run_with_base_url_attaches_instead_of_deploying(matrix_ray, tmp_path):
    """`matrix run ... llm=vllm llm.base_url=...`: the core's start_backend takes the plugin's
    attach path (no Serve application), and the rows are the stand-in's replies."""
    import matrix_core
    from matrix_core._private.serving import app_names
    from matrix_core.testing import read_records

    with standin.running("served-elsewhere") as (url, server):
        matrix_core.run("dialogue", ["llm=vllm", f"llm.base_url={url}", "llm.model=served-elsewhere", "dataset.limit=2",
                                     f"output.path={tmp_path / 'd.jsonl'}", "run.progress=off"])
        assert server.poll() is None
    records = read_records(tmp_path / "d.jsonl")
    assert [r["status"] for r in records] == ["done", "done"] and all("echo: " in json.dumps(r) for r in records)
    assert not [a for a in app_names() if a.startswith("run-")]


def test_start_without_base_url_says_it_deploys_on_serve():
    with pytest.raises(ConfigError, match=r"^llm=vllm is deployed on Ray Serve .*: set llm.base_url to attach") as err:
        plugin.start_vllm({"model": "m"})
    assert "\n" not in str(err.value)


def test_a_run_deploys_vllm_on_serve_and_a_gpu_less_cluster_refuses_it(matrix_ray, tmp_path):
    """`matrix run` with llm=vllm deploys a Ray Serve application for the run (ray.serve.llm,
    tests/test_vllm_serve.py); this cluster has no GPU, so the run is refused before anything is
    deployed, with the numbers (tp 2: two GPUs per replica)."""
    import matrix_core

    with pytest.raises(MatrixError, match=r"needs 1 replica\(s\) of 1 CPU, 2 GPU each, but the Ray cluster holds 0"):
        matrix_core.run("dialogue", ["llm=vllm", "llm.model=Qwen/Qwen2.5-7B-Instruct", "llm.tensor_parallel_size=2",
                                     f"output.path={tmp_path / 'd.jsonl'}", "dataset.limit=2", "run.progress=off"])
