"""simllm returns what real engines return beyond the text: n choices, logprobs with top
alternatives, reasoning content, JSON for a schema; the client keeps all of it."""
from __future__ import annotations

import asyncio
import json

import jsonschema

from matrix_core import Endpoint, LLMClient, LLMError
from matrix_plugin_simllm import settings
from matrix_plugin_simllm.server import SimServer

USER = [{"role": "user", "content": "Name a colour."}]
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "score": {"type": "integer", "minimum": 1, "maximum": 5},
                   "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
                   "kind": {"enum": ["a", "b"]}, "ok": {"type": "boolean"}},
    "required": ["name", "score", "tags", "kind", "ok"],
    "additionalProperties": False,
}


def ask(cfg, **params):
    async def go():
        server = SimServer(settings({"time_scale": 50, "tick_ms": 2, "output_tokens": {"dist": "uniform", "min": 3, "max": 12}, **cfg}))
        port = await server.start("127.0.0.1", 0)
        llm = LLMClient([Endpoint(base_url=f"http://127.0.0.1:{port}/v1", model="simllm")], max_retries=0, timeout_s=30)
        try:
            return await llm.chat(USER, **params)
        finally:
            await llm.aclose()
            await server.close()

    return asyncio.run(go())


def test_n_choices_with_logprobs_and_top_logprobs_reach_the_turn():
    result = ask({}, n=3, logprobs=True, top_logprobs=4)
    assert len(result.choices) == 3 and result.content == result.choices[0].content
    assert len({c.content for c in result.choices}) == 3  # independent samples
    for choice in result.choices:
        assert [e["token"].strip() for e in choice.logprobs] == choice.content.split()
        for entry in choice.logprobs:
            tops = entry["top_logprobs"]
            assert len(tops) == 4 and tops[0]["token"] == entry["token"]
            assert [t["logprob"] for t in tops] == sorted((t["logprob"] for t in tops), reverse=True)
    assert result.usage.completion_tokens == sum(len(c.content.split()) for c in result.choices)
    turn = result.to_turn(agent="a")
    assert [c.content for c in turn.choices] == [c.content for c in result.choices]
    assert turn.logprobs == result.choices[0].logprobs and turn.model == "simllm" and turn.finish_reason == "stop"
    record = turn.model_dump(mode="json", exclude_defaults=True)
    assert len(record["choices"]) == 3 and record["choices"][2]["logprobs"][0]["top_logprobs"]


def test_one_choice_without_logprobs_leaves_the_turn_as_before():
    turn = ask({}).to_turn(agent="a")
    assert turn.choices is None and turn.logprobs is None and turn.reasoning_content is None and turn.cached is None
    assert set(turn.model_dump(mode="json", exclude_defaults=True)) == {"role", "content", "agent", "usage", "latency_s", "finish_reason", "model"}


def test_reasoning_content_is_kept():
    result = ask({"reasoning_tokens": 7})
    assert len(result.reasoning_content.split()) == 7
    assert result.to_turn().reasoning_content == result.reasoning_content


def test_json_schema_requests_get_valid_json():
    result = ask({}, json_schema=SCHEMA)
    jsonschema.validate(json.loads(result.content), SCHEMA)


def test_bad_n_and_top_logprobs_are_rejected():
    for params in ({"n": 0}, {"top_logprobs": 3}, {"logprobs": True, "top_logprobs": 99}):
        try:
            ask({}, **params)
        except LLMError as exc:
            assert "400" in str(exc)
        else:
            raise AssertionError(f"{params} was accepted")
