"""The ``fake`` LLM backend's in-process server (a test double; ``matrix_core.testing`` exports it).

It answers at the HTTP layer (``fake://`` endpoints), so the real client code runs: the reply
echoes the last user message, token counts are word counts.
"""
from __future__ import annotations

import json
from typing import Any

import httpx

from ..llm import Endpoint

FAKE_ENDPOINT = Endpoint(base_url="fake://llm/v1", model="fake-echo", transport="matrix_core._private.fake_llm:fake_llm_transport")


def _fake_reply(body: dict[str, Any]) -> dict[str, Any]:
    messages = body.get("messages") or []
    last_user = next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "user"), "")
    content = f"[fake reply {len(messages)}] {last_user}"[:400]
    prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in messages)
    return {
        "id": "fake-1",
        "object": "chat.completion",
        "model": body.get("model", FAKE_ENDPOINT.model),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(content.split())},
        "system_fingerprint": "matrix-fake-llm (simulated)",
    }


def fake_llm_transport() -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/chat/completions"):
            return httpx.Response(200, json=_fake_reply(json.loads(request.content or b"{}")))
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": FAKE_ENDPOINT.model}]})
        return httpx.Response(404, json={"error": "not found"})

    return httpx.MockTransport(handle)
