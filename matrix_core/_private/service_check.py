"""``matrix services check NAME``: real calls through the service's endpoint, as a run makes them."""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Mapping

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
PERSON_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name", "age"]}


async def _checks(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    from ..llm import Endpoint, LLMError, client_from_config

    client_cfg = {**((record.get("config") or {}).get("client") or {}), "max_retries": 1}
    client = client_from_config([Endpoint(base_url=record["base_url"], model=record["model"])], client_cfg)
    results = []

    async def run(name: str, call, verdict) -> None:
        started = time.perf_counter()
        try:
            result = await call()
            ok, detail = verdict(result)
        except (LLMError, ValueError, KeyError, TypeError) as exc:
            ok, detail = False, f"{type(exc).__name__}: {str(exc)[:200]}"
        # ok None: the check does not apply to this model
        results.append({"check": name, "ok": ok, "latency_s": time.perf_counter() - started, "detail": detail})

    def chat_verdict(r):
        text = (r.content or "").strip()
        return bool(text), f"{r.usage.completion_tokens} tokens: {text[:60]!r}" if text else "empty reply"

    def tool_verdict(r):
        if "simulated" in str(r.raw.get("system_fingerprint") or ""):
            return None, "skipped: a simulated model makes no tool calls"
        calls = [c for c in r.tool_calls if c.name == "get_weather" and isinstance(c.arguments, dict)]
        how = r.tool_calling or "native"
        return bool(calls), (f"get_weather({json.dumps(calls[0].arguments)}) ({how})" if calls else f"no get_weather call ({how}): {(r.content or '')[:60]!r}")

    def schema_verdict(r):
        data = json.loads(r.content or "")
        ok = isinstance(data, dict) and isinstance(data.get("name"), str) and isinstance(data.get("age"), int) and not isinstance(data.get("age"), bool)
        return ok, f"{json.dumps(data)[:80]}" if ok else f"does not match the schema: {(r.content or '')[:80]!r}"

    try:
        await run("chat", lambda: client.chat([{"role": "user", "content": "Name a colour."}], max_tokens=16), chat_verdict)
        await run("tool call", lambda: client.chat([{"role": "user", "content": "What is the weather in Paris? Use the tool."}],
                                                   tools=[WEATHER_TOOL], max_tokens=64, temperature=0), tool_verdict)
        await run("json schema", lambda: client.chat([{"role": "user", "content": "Invent a person."}], json_schema=PERSON_SCHEMA,
                                                     max_tokens=48, temperature=0), schema_verdict)
    finally:
        await client.aclose()
    return results


def run_checks(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``[{check, ok, latency_s, detail}]`` for a chat, a tool call and a JSON-schema answer."""
    return asyncio.run(_checks(record))
