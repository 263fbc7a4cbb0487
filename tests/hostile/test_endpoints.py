"""LLM endpoints that are dead, lie, or echo the API key: one line, or failed tasks whose
error never holds the key."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from matrix_core.testing import free_port

from .conftest import RUN, by_id, cli, one_error

SECRET = "sk-hostile-0123456789abcdef"


class _Handler(BaseHTTPRequestHandler):
    models = b'{"data": [{"id": "m"}]}'
    models_status = 200

    def do_GET(self):
        self._send(self.models_status, self.models)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        # A server that echoes the credentials it got: the client must scrub them.
        body = json.dumps({"error": {"message": f"Incorrect API key provided: {self.headers.get('Authorization')}; key={SECRET}"}})
        self._send(401, body.encode())

    def _send(self, status, body):
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    def start(models: bytes = _Handler.models, status: int = 200):
        handler = type("H", (_Handler,), {"models": models, "models_status": status})
        srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/v1"

    servers: list = []
    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def _dialogue(url, tmp_path, *overrides):
    return cli("run", "dialogue", "llm=endpoint", f"llm.base_url={url}", *RUN, f"output.path={tmp_path / 'out.jsonl'}", *overrides)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("models, status, expected", [
    pytest.param(b"<html>not json</html>", 200, "is not OpenAI-compatible: /models did not answer a JSON model list", id="models-not-json"),
    pytest.param(b'["a", "b"]', 200, "is not OpenAI-compatible", id="models-json-list"),
    pytest.param(b'{"data": [1, 2]}', 200, "is not OpenAI-compatible", id="models-data-not-objects"),
    pytest.param(b"oops", 500, "answered HTTP 500 to /models", id="models-500"),
    pytest.param(b'{"data": [{"id": "other"}]}', 200, "model 'm' is not served at", id="model-not-served"),
])
def test_endpoint_that_lies_is_one_line(matrix_ray, server, tmp_path, models, status, expected):
    one_error(_dialogue(server(models, status), tmp_path, "llm.model=m"), expected)
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.timeout(120)
def test_dead_endpoint_is_one_line(matrix_ray, tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"
    one_error(_dialogue(url, tmp_path), f"LLM endpoint {url} does not answer")


@pytest.mark.timeout(120)
def test_unset_key_variable_is_one_line(matrix_ray, server, tmp_path):
    one_error(_dialogue(server(), tmp_path, "llm.api_key_env=MATRIX_HOSTILE_UNSET"), "llm.api_key_env names MATRIX_HOSTILE_UNSET, which is not set")


@pytest.mark.timeout(300)
def test_key_echoed_in_a_401_body_never_reaches_the_output(matrix_ray, server, tmp_path, monkeypatch):
    monkeypatch.setenv("MATRIX_HOSTILE_KEY", SECRET)
    result = _dialogue(server(), tmp_path, "llm.api_key_env=MATRIX_HOSTILE_KEY", "llm.client.max_retries=0", "dataset.limit=2")
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "out.jsonl"
    written = by_id(out)
    assert len(written) == 2 and all(r["status"] == "failed" for r in written.values())
    for record in written.values():
        assert "answered HTTP 401" in record["error"]["message"] and "Bearer ***" in record["error"]["message"], record["error"]
    for text in (out.read_text(), result.stdout, result.stderr):
        assert SECRET not in text


def test_scrub_masks_a_key_and_bearer_credentials():
    from matrix_core._private.secrets import scrub

    assert scrub(f"bad key {SECRET} (Authorization: Bearer abc.def-ghi)", [SECRET]) == "bad key *** (Authorization: Bearer ***)"
