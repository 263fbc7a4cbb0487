"""Test double: a scripted LLM that answers the scorer's and generator's JSON schemas.

For tests and smoke runs without a model (``llm=fake`` echoes, so every JSON reply would be
unparseable). Deterministic per passage: the scores are digits of a hash of the prompt, so
about half the passages pass a 3.0 threshold; a passage containing ``UNPARSEABLE`` gets a
reply that is not JSON. It lives in the package because Ray workers load the transport by
module name.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx

from matrix_core import Endpoint

SCRIPTED_ENDPOINT = Endpoint(base_url="nrscripted://llm/v1", model="nr-scripted", transport="matrix_plugin_naturalreasoning.testing:scripted_transport")


def scripted_scores(prompt: str) -> dict[str, int]:
    digest = hashlib.sha256(prompt.encode()).digest()
    return {"reasoning": 1 + digest[0] % 5, "clarity": 1 + digest[1] % 5, "self_contained": 1 + digest[2] % 5}


def _reply(body: dict[str, Any]) -> str:
    prompt = body["messages"][-1]["content"]
    if "UNPARSEABLE" in prompt:
        return "I think this passage is fine"
    schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema") or {}
    props = schema.get("properties") or {}
    if "reasoning" in props:
        return json.dumps(scripted_scores(prompt))
    if "question" in props:
        words = prompt.split()
        return json.dumps({"question": f"Why does the passage say '{' '.join(words[-4:])}'?", "reference_answer": "Because of " + " ".join(words[-8:-4]),
                           "reasoning_steps": ["Read the passage.", "Find the cause."]})
    return "no schema"


def scripted_transport() -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content or b"{}")
        content = _reply(body)
        usage = {"prompt_tokens": sum(len(str(m.get("content") or "").split()) for m in body["messages"]), "completion_tokens": len(content.split())}
        return httpx.Response(200, json={"model": SCRIPTED_ENDPOINT.model, "usage": usage,
                                         "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]})

    return httpx.MockTransport(handle)
