"""The LLM client against scripted OpenAI-compatible HTTP servers on loopback (test doubles
for fault injection; the real llama.cpp server is exercised in the llamacpp plugin tests)."""
import asyncio
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from matrix_core import Endpoint, LLMClient, LLMError


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # listen backlog: the default 5 refuses bursts of concurrent calls


class ScriptedServer:
    """Answers /v1/chat/completions from a script of (status, headers, body) steps."""

    def __init__(self, script=(), delay_s=0.0):
        self.script = list(script)
        self.requests = []
        self.active = 0
        self.peak_active = 0
        self.delay_s = delay_s
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.requests.append(body)
                    outer.active += 1
                    outer.peak_active = max(outer.peak_active, outer.active)
                    step = outer.script.pop(0) if outer.script else (200, {}, None)
                time.sleep(outer.delay_s)
                status, headers, payload = step
                if payload is None:
                    payload = {
                        "model": "scripted",
                        "choices": [{"message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
                    }
                data = json.dumps(payload).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                with outer.lock:
                    outer.active -= 1

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.endpoint = Endpoint(f"http://127.0.0.1:{self.httpd.server_port}/v1", "scripted")

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server_factory():
    servers = []

    def make(*args, **kwargs):
        servers.append(ScriptedServer(*args, **kwargs))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def dead_endpoint():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return Endpoint(f"http://127.0.0.1:{port}/v1", "scripted")


def chat(client, **kw):
    async def go():
        try:
            return await client.chat([{"role": "user", "content": "hi"}], **kw)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_retries_429_honouring_retry_after(server_factory):
    server = server_factory([(429, {"Retry-After": "0.3"}, {"error": "slow down"})] * 2)
    started = time.perf_counter()
    result = chat(LLMClient([server.endpoint], backoff_base_s=0.01))
    assert result.content == "ok" and len(server.requests) == 3
    assert time.perf_counter() - started >= 0.6
    assert result.usage.prompt_tokens == 3 and result.usage.completion_tokens == 1


def test_5xx_until_retries_run_out_is_one_clear_error(server_factory):
    server = server_factory([(500, {}, {"error": "engine crashed"})] * 10)
    with pytest.raises(LLMError, match=r"after 3 attempts: .*HTTP 500: .*engine crashed"):
        chat(LLMClient([server.endpoint], max_retries=2, backoff_base_s=0.01))
    assert len(server.requests) == 3


def test_client_errors_are_not_retried(server_factory):
    server = server_factory([(400, {}, {"error": "model not found"})])
    with pytest.raises(LLMError, match="HTTP 400.*model not found"):
        chat(LLMClient([server.endpoint], backoff_base_s=0.01))
    assert len(server.requests) == 1


def test_fails_over_away_from_a_dead_endpoint(server_factory):
    server = server_factory()
    client = LLMClient([dead_endpoint(), server.endpoint], backoff_base_s=0.01)

    async def many():
        try:
            return await asyncio.gather(*(client.chat([{"role": "user", "content": str(i)}]) for i in range(10)))
        finally:
            await client.aclose()

    results = asyncio.run(many())
    assert all(r.endpoint == server.endpoint.base_url for r in results)
    assert len(server.requests) == 10


def test_all_endpoints_dead_reports_unreachable():
    with pytest.raises(LLMError, match="unreachable"):
        chat(LLMClient([dead_endpoint()], max_retries=1, backoff_base_s=0.01))


def test_concurrency_limit_per_endpoint(server_factory):
    server = server_factory(delay_s=0.05)
    client = LLMClient([server.endpoint], max_concurrency_per_endpoint=3)

    async def many():
        try:
            await asyncio.gather(*(client.chat([{"role": "user", "content": "x"}]) for _ in range(12)))
        finally:
            await client.aclose()

    asyncio.run(many())
    assert server.peak_active == 3


def test_sticky_key_pins_a_task_to_one_endpoint(server_factory):
    # Concurrent calls: least-loaded balancing alone would spread each key's calls over both.
    a, b = server_factory(delay_s=0.05), server_factory(delay_s=0.05)
    client = LLMClient([a.endpoint, b.endpoint])
    keys = [f"task-{i}" for i in range(8)]

    async def call(key):
        result = await client.chat([{"role": "user", "content": "x"}], sticky_key=key)
        return key, result.endpoint

    async def many():
        try:
            return await asyncio.gather(*(call(key) for key in keys for _ in range(4)))
        finally:
            await client.aclose()

    used: dict[str, set] = {}
    for key, endpoint in asyncio.run(many()):
        used.setdefault(key, set()).add(endpoint)
    assert all(len(endpoints) == 1 for endpoints in used.values()), used
    assert set().union(*used.values()) == {a.endpoint.base_url, b.endpoint.base_url}  # keys spread over both


def test_tools_schema_and_tool_call_parsing(server_factory):
    reply = {
        "model": "scripted",
        "choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{\"id\": 3}"}},
            {"id": "c2", "type": "function", "function": {"name": "broken", "arguments": "{not json"}},
        ]}, "finish_reason": "tool_calls"}],
    }
    server = server_factory([(200, {}, reply)])
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    result = chat(LLMClient([server.endpoint]), tools=tools, json_schema=schema, temperature=0.1)
    sent = server.requests[0]
    assert sent["tools"] == tools and sent["temperature"] == 0.1 and sent["model"] == "scripted"
    assert sent["response_format"]["json_schema"]["schema"] == schema
    assert [(c.name, c.arguments) for c in result.tool_calls] == [("lookup", {"id": 3}), ("broken", "{not json")]
    turn = result.to_turn(agent="assistant")
    assert turn.tool_calls[0].id == "c1" and turn.meta == {"malformed_tool_calls": ["c2"], "tool_calling": "native"}


def test_malformed_completion_is_an_error(server_factory):
    server = server_factory([(200, {}, {"unexpected": True})])
    with pytest.raises(LLMError, match="malformed completion"):
        chat(LLMClient([server.endpoint]))


def test_fake_llm_fixture_answers_through_the_real_client(fake_llm):
    result = chat(fake_llm)
    assert result.content.startswith("[fake reply") and result.usage.completion_tokens > 0


def test_connections_are_spread_over_small_pools(server_factory):
    # 32 calls in flight at once: they fill 4 pools of 8 connections, no pool holds more.
    server = server_factory(delay_s=0.3)
    client = LLMClient([server.endpoint], max_concurrency_per_endpoint=32)
    assert len(client._pools) == 4

    async def go():
        try:
            calls = asyncio.gather(*(client.chat([{"role": "user", "content": "hi"}]) for _ in range(32)))
            await asyncio.sleep(0.15)
            loads = list(client._pool_load)
            return await calls, loads
        finally:
            await client.aclose()

    results, loads = asyncio.run(go())
    assert all(r.content == "ok" for r in results) and loads == [8, 8, 8, 8] and len(server.requests) == 32
