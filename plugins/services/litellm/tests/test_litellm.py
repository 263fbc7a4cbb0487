"""The litellm backend without the internet: LiteLLM's openai provider against loopback servers
(scripted ones for error mapping, llama.cpp's for real completions), and a whole `dialogue`
run that must not leak the key anywhere."""
from __future__ import annotations

import asyncio
import glob
import json
import logging
import os
import socket
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import matrix_plugin_litellm as plugin
import pytest
from matrix_plugin_litellm import credentials
from matrix_plugin_litellm.transport import make_transport, scrub

import matrix_core
from matrix_core import ConfigError, Endpoint, LLMClient, LLMError, MatrixError

KEY_ENV = "MATRIX_LITELLM_TEST_KEY"  # set in conftest.py before Ray starts
OK = {"id": "s", "object": "chat.completion", "created": 1, "model": "scripted",
      "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
      "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}


class ScriptedServer:
    """An OpenAI-compatible loopback server answering from a script of (status, headers, body, delay_s)."""

    def __init__(self):
        self.script, self.requests = [], []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((self.headers.get("Authorization"), body))
                status, headers, payload, delay = outer.script.pop(0) if outer.script else (200, {}, OK, 0)
                time.sleep(delay)
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    for k, v in {**headers, "Content-Type": "application/json", "Content-Length": str(len(data))}.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the caller timed out
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/v1"

    def then(self, status, payload=None, headers=None, delay=0.0):
        self.script.append((status, headers or {}, payload if payload is not None else {"error": {"message": f"scripted {status}"}}, delay))
        return self


@pytest.fixture
def server():
    s = ScriptedServer()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def endpoint(api_base, key_env=KEY_ENV, **settings):
    """What start_litellm returns, without its checks (no Ray needed)."""
    ref = credentials.encode({"key_env": key_env, "secrets_file": None, "api_base": api_base, "api_version": None, **settings})
    return Endpoint("litellm://openai/v1", "openai/scripted", api_key=ref, transport=plugin.TRANSPORT)


def post(ep, timeout=10.0):
    async def go():
        async with httpx.AsyncClient(transport=make_transport(), timeout=timeout) as http:
            return await http.post(ep.base_url + "/chat/completions", json={"model": ep.model, "messages": [{"role": "user", "content": "hi"}]},
                                   headers={"Authorization": f"Bearer {ep.api_key}"})

    return asyncio.run(go())


def chat(endpoints, messages=({"role": "user", "content": "hi"},), max_retries=0, **params):
    async def go():
        client = LLMClient(endpoints, max_retries=max_retries, backoff_base_s=0.01, timeout_s=120)
        try:
            return await client.chat(list(messages), **params)
        finally:
            await client.aclose()

    return asyncio.run(go())


def dead_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


@pytest.mark.parametrize("status, headers, expected, retry_after", [
    (429, {"Retry-After": "7"}, 429, "7.0"),
    (500, {}, 500, None),
    (503, {}, 503, None),
    (401, {}, 401, None),
    (403, {}, 403, None),
    (404, {}, 404, None),
    (400, {}, 400, None),
])
def test_status_mapping(server, status, headers, expected, retry_after):
    server.then(status, headers=headers)
    response = post(endpoint(server.url))
    assert response.status_code == expected
    assert response.headers.get("retry-after") == retry_after
    assert f"scripted {status}" in response.json()["error"]["message"]
    assert len(server.requests) == 1  # litellm's own retries are off


def test_connection_refused_and_timeout(server):
    assert post(endpoint(dead_url())).status_code == 503
    server.then(200, OK, delay=3)
    assert post(endpoint(server.url), timeout=0.5).status_code == 504


def test_success_and_request_shape(server):
    response = post(endpoint(server.url))
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "ok"
    auth, body = server.requests[0]
    assert auth == f"Bearer {os.environ[KEY_ENV]}"  # the provider gets the key; the client never held it
    assert body["model"] == "scripted" and body["messages"] == [{"role": "user", "content": "hi"}]


def test_client_retries_and_tools(server):
    server.then(429, headers={"Retry-After": "0"}).then(500).then(200, {**OK, "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"x\": 1}"}}]}}]})
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}}}]
    result = chat([endpoint(server.url)], max_retries=2, tools=tools, max_tokens=8)
    assert [(c.name, c.arguments) for c in result.tool_calls] == [("f", {"x": 1})]
    assert len(server.requests) == 3 and server.requests[-1][1]["tools"] == tools
    server.then(401)
    with pytest.raises(LLMError, match="HTTP 401"):
        chat([endpoint(server.url)], max_retries=3)
    assert len(server.requests) == 4  # not retried


def test_provider_errors_are_scrubbed(server, monkeypatch):
    secret = "sk-proj-Abc123Def456Ghi789"
    monkeypatch.setenv("SCRUB_TEST_KEY", secret)
    server.then(401, {"error": {"message": f"Incorrect API key provided: {secret}. Or sk-proj-Abc1****Ghi789?"}})
    with pytest.raises(LLMError) as err:
        chat([endpoint(server.url, key_env="SCRUB_TEST_KEY")])
    assert "Incorrect API key provided: ***" in str(err.value)
    assert "Abc1" not in str(err.value) and "Ghi789" not in str(err.value)
    assert scrub("key sk-abc123456 and its tail 123456", "sk-abc123456") == "key *** and its tail ***"


def test_key_missing_where_the_call_is_made(server):
    response = post(endpoint(server.url, key_env="MATRIX_NOT_SET_ANYWHERE"))
    assert response.status_code == 401 and "MATRIX_NOT_SET_ANYWHERE is not set in this process" in response.text
    assert not server.requests


def test_start_checks(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("AZURE_API_BASE", raising=False)
    monkeypatch.delenv("OLLAMA_API_BASE", raising=False)
    with pytest.raises(ConfigError, match="^llm=litellm \\(openai/gpt-4o-mini\\): OPENAI_API_KEY is not set in the environment; "):
        plugin.start_litellm({"model": "openai/gpt-4o-mini"})
    with pytest.raises(ConfigError, match="MATRIX_NOT_SET_ANYWHERE is not set"):
        plugin.start_litellm({"model": "gemini/gemini-2.0-flash", "api_key_env": "MATRIX_NOT_SET_ANYWHERE"})
    with pytest.raises(ConfigError, match="^llm.model='nonsense': LiteLLM cannot tell the provider"):
        plugin.start_litellm({"model": "nonsense"})
    with pytest.raises(ConfigError, match="Azure needs llm.api_base \\(or AZURE_API_BASE\\)"):
        plugin.start_litellm({"model": "azure/gpt-4o", "api_key_env": KEY_ENV})
    with pytest.raises(ConfigError, match="set OLLAMA_API_BASE"):
        plugin.start_litellm({"model": "ollama/llama3"})
    with pytest.raises(ConfigError, match="llm.secrets_file: .*missing.env cannot be read"):
        plugin.start_litellm({"model": "openai/gpt-4o-mini", "secrets_file": str(tmp_path / "missing.env")})
    with pytest.raises(ConfigError, match="llm.model is not set"):
        plugin.start_litellm({})


def test_endpoint_carries_names_not_keys(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("secrets.env").write_text("# provider keys\nexport AZURE_API_KEY='az-secret-1'\nAZURE_API_BASE=https://x.openai.azure.com\nAZURE_API_VERSION=2024-06-01\n")
    os.chmod("secrets.env", 0o600)
    handle = plugin.start_litellm({"model": "azure/gpt-4o", "secrets_file": "secrets.env"})
    ep = handle.endpoints[0]
    assert (ep.base_url, ep.model, ep.transport) == ("litellm://azure/v1", "azure/gpt-4o", plugin.TRANSPORT)
    assert credentials.decode(f"Bearer {ep.api_key}") == {"key_env": "AZURE_API_KEY", "secrets_file": str(tmp_path / "secrets.env"),
                                                          "api_base": "https://x.openai.azure.com", "api_version": "2024-06-01"}
    assert "az-secret-1" not in ep.api_key + repr(ep) + repr(handle.info)
    assert credentials.lookup("AZURE_API_KEY", str(tmp_path / "secrets.env")) == "az-secret-1"


def test_workers_must_resolve_the_key(matrix_ray, monkeypatch, tmp_path, server):
    monkeypatch.setenv("MATRIX_LATE_KEY", "late")  # after Ray started: its workers do not have it
    with pytest.raises(MatrixError, match="^llm=litellm: MATRIX_LATE_KEY is not set in the Ray workers \\(the driver has it\\)"):
        plugin.start_litellm({"model": "openai/x", "api_base": server.url, "api_key_env": "MATRIX_LATE_KEY"})
    secrets = tmp_path / "keys.env"
    secrets.write_text("MATRIX_LATE_KEY=from-file\n")
    handle = plugin.start_litellm({"model": "openai/x", "api_base": server.url, "api_key_env": "MATRIX_LATE_KEY", "secrets_file": str(secrets)})
    assert chat(handle.endpoints).content == "ok" and server.requests[0][0] == "Bearer from-file"


@pytest.fixture(scope="module")
def llama(matrix_ray):
    llamacpp = pytest.importorskip("matrix_plugin_llamacpp")
    if llamacpp._bundled_model_dir() is None:
        pytest.skip(f"model not installed: {llamacpp.INSTALL}")
    handle = llamacpp.start_llamacpp({"port": 0, "n_parallel": 2, "ctx_size": 2048})
    yield handle
    handle.stop()


@pytest.mark.llm
def test_llamacpp_through_litellm(llama):
    handle = plugin.start_litellm({"model": f"openai/{llama.endpoints[0].model}", "api_base": llama.endpoints[0].base_url, "api_key_env": KEY_ENV})
    result = chat(handle.endpoints, [{"role": "user", "content": "Name a colour."}], max_tokens=16)
    assert result.content and result.content.strip() and result.usage.completion_tokens > 0
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name", "age"]}
    data = json.loads(chat(handle.endpoints, [{"role": "user", "content": "Invent a person."}], json_schema=schema, max_tokens=48, temperature=0).content)
    assert isinstance(data["name"], str) and isinstance(data["age"], int)


def test_run_never_writes_the_key(matrix_ray, server, tmp_path, caplog, capfd):
    marker = os.environ[KEY_ENV]
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "out" / "dialogue.jsonl"
    summary = matrix_core.run("dialogue", ["llm=litellm", "llm.model=openai/scripted", f"llm.api_base={server.url}", f"llm.api_key_env={KEY_ENV}",
                                           f"output.path={out}", "dataset.limit=2", "run.progress=off"])
    assert (summary.done, summary.failed) == (2, 0)
    assert server.requests and {auth for auth, _ in server.requests} == {f"Bearer {marker}"}  # the key did reach the provider
    captured = capfd.readouterr()
    assert marker not in caplog.text + captured.out + captured.err
    ray_logs = glob.glob(os.path.join(tempfile.gettempdir(), f"matrix-test-ray-{os.getpid()}", "session_latest", "logs", "**", "*"), recursive=True)
    for path in [*out.parent.rglob("*"), *map(Path, ray_logs)]:
        if path.is_file():
            assert marker.encode() not in path.read_bytes(), f"the key is in {path}"
    assert len(ray_logs) > 3  # the worker logs were searched, not just absent


def test_run_without_key_fails_before_tasks(matrix_ray, tmp_path):
    out = tmp_path / "d.jsonl"
    with pytest.raises(ConfigError, match="MATRIX_NOT_SET_ANYWHERE is not set in the environment"):
        matrix_core.run("dialogue", ["llm=litellm", "llm.model=openai/x", "llm.api_key_env=MATRIX_NOT_SET_ANYWHERE", f"output.path={out}", "run.progress=off"])
    assert not out.exists()
