"""Tool calls on any model: the server's own (``native``) or ``prompted`` with JSON-schema output.

``native`` sends ``tools`` as is. ``prompted`` is for servers or models without tool calling
(a chat template that ignores ``tools``, an OpenAI-compatible server without a tool parser):
the tool schemas go into the system prompt, earlier calls and results are rendered as plain
turns, and the reply is constrained by ``response_format`` (llama.cpp, vLLM and SGLang
enforce it) to either ``{"name": TOOL, "arguments": {...}}`` for one offered tool, its
arguments held to that tool's parameter schema, or ``{"reply": TEXT}``. The client returns it
as an ordinary OpenAI tool call, so agents do not change. ``auto`` probes once per client
with one small request and keeps what works. Each result says which mode produced it.
"""
from __future__ import annotations

import asyncio
import copy
import json
import logging
import re
import uuid
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..errors import ConfigError
from ..protocol import ToolCall

if TYPE_CHECKING:
    from ..llm import LLMClient, LLMResult

log = logging.getLogger("matrix.llm")

MODES = ("native", "prompted", "auto")

PROBE_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
PROBE_MESSAGES = [{"role": "user", "content": "What is the weather in Paris right now? Use the get_weather tool."}]

INSTRUCTIONS = """# Tools
You can call these tools (one JSON object each: name, description, JSON schema of the arguments):
{tools}

# Answer format
Answer with exactly one JSON object. {choices}"""
CALL_FORMAT = 'To call a tool: {"name": "<tool name>", "arguments": {<the tool\'s arguments>}}.'
REPLY_FORMAT = 'To write a message instead: {"reply": "<your message>"}.'


class ToolCalling:
    """One client's tool-calling mode; for ``auto``, the probe's verdict once it is known."""

    def __init__(self, mode: str = "auto"):
        if mode not in MODES:
            raise ConfigError(f"llm.client.tool_calling must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        self.resolved: str | None = None if mode == "auto" else mode
        self._lock: asyncio.Lock | None = None

    async def resolve(self, client: "LLMClient") -> str:
        if self.resolved is None:
            self._lock = self._lock or asyncio.Lock()
            async with self._lock:  # one probe, however many calls arrive at once
                if self.resolved is None:
                    self.resolved, why = await _probe(client)
                    log.info("tool calling on %s: %s (%s)", client.endpoints[0].model, self.resolved, why)
        return self.resolved

    async def chat(self, client: "LLMClient", messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]],
                   *, json_schema: Mapping[str, Any] | None, sticky_key: str | None, **params: Any) -> "LLMResult":
        mode = await self.resolve(client)
        if mode == "native":
            result = await client.chat(messages, tools=tools, json_schema=json_schema, sticky_key=sticky_key, _direct=True, **params)
        else:
            if json_schema is not None:
                raise ConfigError("a call with both tools and json_schema needs native tool calling (llm.client.tool_calling=native)")
            result = await prompted_chat(client, messages, tools, sticky_key=sticky_key, **params)
        result.tool_calling = mode
        return result


async def _probe(client: "LLMClient") -> tuple[str, str]:
    """``native`` when the server returns a well-formed call to an obvious tool request."""
    from ..llm import LLMError

    # Room for a reasoning model to think first; some APIs refuse these parameters: then bare.
    for params in ({"max_tokens": 256, "temperature": 0}, {}):
        try:
            result = await client.chat(PROBE_MESSAGES, tools=[PROBE_TOOL], _direct=True, **params)
            break
        except LLMError as exc:
            if not re.search(r"answered HTTP 4\d\d", str(exc)):
                raise  # unreachable or overloaded: probe again on the next call
            refused = exc
    else:
        return "prompted", f"the server refused a request with tools: {refused}"
    if any(c.name == "get_weather" and isinstance(c.arguments, dict) and c.arguments.get("city") for c in result.tool_calls):
        return "native", "the server returned a well-formed tool call"
    return "prompted", "the server answered a request with tools in plain text"


# --- prompted mode ------------------------------------------------------------------------


async def prompted_chat(client: "LLMClient", messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]],
                        *, sticky_key: str | None = None, **params: Any) -> "LLMResult":
    choice = params.pop("tool_choice", None)
    params.pop("parallel_tool_calls", None)
    offered = _chosen(tools, choice)
    if not offered:  # tool_choice "none": a plain reply, tools unmentioned
        return await client.chat(render_history(messages, tools), sticky_key=sticky_key, _direct=True, **params)
    allow_reply = choice in (None, "auto")
    prompt = render_history(messages, tools, offered, allow_reply)
    result = await client.chat(prompt, json_schema=answer_schema(offered, allow_reply), sticky_key=sticky_key, _direct=True, **params)
    text, calls = parse_answer(result.content, {t["function"]["name"] for t in offered})
    result.content, result.tool_calls = text, calls
    if calls:
        result.finish_reason = "tool_calls"
    return result


def _chosen(tools: Sequence[Mapping[str, Any]], choice: Any) -> list[Mapping[str, Any]]:
    if choice == "none":
        return []
    if isinstance(choice, Mapping):
        name = (choice.get("function") or {}).get("name")
        return [t for t in tools if t["function"]["name"] == name]
    return list(tools)


def answer_schema(tools: Sequence[Mapping[str, Any]], allow_reply: bool = True) -> dict[str, Any]:
    """``anyOf`` over one object per tool (its name as a constant, its parameters) and the reply."""
    defs: dict[str, Any] = {}
    options = []
    for tool in tools:
        fn = tool["function"]
        params = _hoist_defs(copy.deepcopy(fn.get("parameters") or {"type": "object", "properties": {}}), fn["name"], defs)
        options.append({"type": "object", "properties": {"name": {"const": fn["name"]}, "arguments": params},
                        "required": ["name", "arguments"], "additionalProperties": False})
    if allow_reply:
        options.append({"type": "object", "properties": {"reply": {"type": "string"}}, "required": ["reply"], "additionalProperties": False})
    schema: dict[str, Any] = {"anyOf": options}
    if defs:
        schema["$defs"] = defs
    return schema


def _hoist_defs(schema: dict[str, Any], owner: str, defs: dict[str, Any]) -> dict[str, Any]:
    """Local ``$defs`` move to the root (refs resolve from there), renamed where tools disagree."""
    local = {**schema.pop("definitions", {}), **schema.pop("$defs", {})}
    if not local:
        return schema
    names = {}
    for name, body in local.items():
        names[name] = name if defs.get(name, body) == body else f"{owner}.{name}"
        defs[names[name]] = body

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and (m := re.fullmatch(r"#/(?:\$defs|definitions)/(.+)", ref)) and m.group(1) in names:
                node["$ref"] = f"#/$defs/{names[m.group(1)]}"
            for value in node.values():
                fix(value)
        elif isinstance(node, list):
            for value in node:
                fix(value)
        return node

    fix(defs)  # the moved definitions may refer to each other
    return fix(schema)


def _call_json(name: str, arguments: Any) -> str:
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            pass
    return json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)


def render_history(messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]],
                   offered: Sequence[Mapping[str, Any]] | None = None, allow_reply: bool = True) -> list[dict[str, Any]]:
    """The conversation for a model without tool support: tools described in the system
    prompt, its own earlier calls in the JSON it is asked to write, tool results as user turns
    naming the tool; consecutive turns of one role are merged (strict templates)."""
    names = {c.get("id"): (c.get("function") or {}).get("name")
             for m in messages for c in (m.get("tool_calls") or [])}
    out: list[dict[str, Any]] = []
    for m in messages:
        role, content = m.get("role"), m.get("content")
        if isinstance(content, list):  # typed parts: keep the text
            content = "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
        if role == "assistant":
            lines = [content] if content else []  # as plain text: JSON replies here made small models reply, not call
            lines += [_call_json((c.get("function") or {}).get("name", ""), (c.get("function") or {}).get("arguments"))
                      for c in m.get("tool_calls") or []]
            text = "\n".join(lines)
        elif role == "tool":
            role = "user"
            text = f"Result of {names.get(m.get('tool_call_id')) or 'the tool call'}: {content or ''}"
        else:
            text = content or ""
        if out and out[-1]["role"] == role and role != "system":
            out[-1]["content"] += "\n\n" + text
        else:
            out.append({"role": role, "content": text})
    if offered is not None:
        listing = "\n".join(json.dumps({k: t["function"].get(k) for k in ("name", "description", "parameters")}, ensure_ascii=False)
                            for t in offered)
        choices = CALL_FORMAT + (" " + REPLY_FORMAT if allow_reply else "")
        section = INSTRUCTIONS.format(tools=listing, choices=choices)
        if out and out[0]["role"] == "system":
            out[0]["content"] = f"{out[0]['content']}\n\n{section}"
        else:
            out.insert(0, {"role": "system", "content": section})
    return out


def parse_answer(content: str | None, names: set[str]) -> tuple[str | None, list[ToolCall]]:
    """``(text, calls)`` from a constrained answer. One cut short by ``max_tokens`` keeps what it
    has: a call with its raw arguments (marked malformed on the turn), or the reply so far."""
    raw = content or ""
    data, complete = _loads_lenient(raw)
    if isinstance(data, dict):
        name = data.get("name")
        if isinstance(name, str) and name in names:
            args = data.get("arguments")
            if not complete or not isinstance(args, dict):
                args = raw  # incomplete: kept raw, so the turn records a malformed call
            return None, [ToolCall(id=f"call_{uuid.uuid4().hex[:12]}", name=name, arguments=args)]
        if isinstance(data.get("reply"), str):
            return data["reply"], []
    match = re.match(r'\s*\{\s*"name"\s*:\s*"([^"]+)"', raw)
    if match and match.group(1) in names:
        return None, [ToolCall(id=f"call_{uuid.uuid4().hex[:12]}", name=match.group(1), arguments=raw)]
    return raw, []


def _loads_lenient(raw: str) -> tuple[Any, bool]:
    """The JSON value, and whether it was complete (else closed by a guessed suffix)."""
    for suffix in ("", '"}', "}", '"}}', "}}"):
        try:
            return json.loads(raw + suffix), not suffix
        except json.JSONDecodeError:
            continue
    return None, False
