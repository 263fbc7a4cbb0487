"""Tool calling per LLM resource: native, prompted (JSON-schema answers), auto (probed once),
against scripted OpenAI-compatible servers at the HTTP layer (test doubles: the embedded model
runs in plugins/agents/tau2/tests/test_tau2_tool_calling.py)."""
import asyncio
import json

import httpx
import jsonschema
import pytest

from matrix_core import ConfigError, Endpoint, LLMClient
from matrix_core._private.tool_calling import answer_schema, parse_answer, render_history
from matrix_core.llm import client_from_config

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CLOCK = {"type": "function", "function": {"name": "get_time", "description": "The time.", "parameters": {"type": "object", "properties": {}}}}


def completion(content=None, tool_calls=None):
    message = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = [{"id": f"id{i}", "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
                                 for i, (n, a) in enumerate(tool_calls)]
    return {"model": "m", "choices": [{"message": message, "finish_reason": "tool_calls" if tool_calls else "stop"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3}}


class Server:
    """Records request bodies; answers each with ``reply(body)`` (status, json)."""

    def __init__(self, reply):
        self.bodies = []
        self.reply = reply

    def client(self, mode):
        def handle(request):
            body = json.loads(request.content)
            self.bodies.append(body)
            status, payload = self.reply(body)
            return httpx.Response(status, json=payload)

        return LLMClient([Endpoint("http://scripted/v1", "m")], transport=httpx.MockTransport(handle), max_retries=0, tool_calling=mode)


def run(coro):
    return asyncio.run(coro)


async def ask(client, **params):
    try:
        return await client.chat([{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER, CLOCK], **params)
    finally:
        await client.aclose()


def native_server(body):
    return 200, completion(tool_calls=[("get_weather", {"city": "Paris"})]) if body.get("tools") else completion("plain")


def prompted_server(body):
    # A server whose template drops tools: it answers what the JSON schema asks for.
    assert "tools" not in body and "tool_choice" not in body
    return 200, completion(json.dumps({"name": "get_weather", "arguments": {"city": "Paris"}}) if body.get("response_format") else "plain text")


def test_native_and_prompted_give_the_same_call():
    native = run(ask(Server(native_server).client("native")))
    server = Server(prompted_server)
    prompted = run(ask(server.client("prompted")))
    for result, mode in ((native, "native"), (prompted, "prompted")):
        assert [(c.name, c.arguments) for c in result.tool_calls] == [("get_weather", {"city": "Paris"})]
        assert result.content is None and result.finish_reason == "tool_calls" and result.tool_calling == mode
        assert result.to_turn("a").meta == {"tool_calling": mode}
    (body,) = server.bodies
    system = body["messages"][0]
    assert system["role"] == "system" and '"name": "get_weather"' in system["content"] and '{"reply":' in system["content"]
    schema = body["response_format"]["json_schema"]["schema"]
    jsonschema.validate({"name": "get_weather", "arguments": {"city": "Paris"}}, schema)
    jsonschema.validate({"reply": "Hello"}, schema)
    for bad in ({"name": "get_weather", "arguments": {}}, {"name": "rm_rf", "arguments": {}}, {"reply": 3}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_prompted_plain_reply_and_tool_choice():
    server = Server(lambda body: (200, completion(json.dumps({"reply": "It is sunny."}))))
    result = run(ask(server.client("prompted")))
    assert result.content == "It is sunny." and result.tool_calls == [] and result.tool_calling == "prompted"

    server = Server(lambda body: (200, completion(json.dumps({"name": "get_time", "arguments": {}}))))
    result = run(ask(server.client("prompted"), tool_choice="required"))
    assert result.tool_calls[0].name == "get_time"
    options = server.bodies[0]["response_format"]["json_schema"]["schema"]["anyOf"]
    assert [o["properties"].get("name", {}).get("const") for o in options] == ["get_weather", "get_time"]  # no reply allowed

    server = Server(lambda body: (200, completion(json.dumps({"name": "get_weather", "arguments": {"city": "Rome"}}))))
    run(ask(server.client("prompted"), tool_choice={"type": "function", "function": {"name": "get_weather"}}))
    assert len(server.bodies[0]["response_format"]["json_schema"]["schema"]["anyOf"]) == 1

    server = Server(lambda body: (200, completion("no tools then")))
    result = run(ask(server.client("prompted"), tool_choice="none"))
    assert result.content == "no tools then" and "response_format" not in server.bodies[0]
    assert "get_weather" not in json.dumps(server.bodies[0]["messages"])


@pytest.mark.parametrize("server, expected, probes", [
    (native_server, "native", 1),
    (lambda body: (200, completion("Paris is lovely." if body.get("tools") else json.dumps({"reply": "ok"}))), "prompted", 1),
    # refused: once more without sampling parameters (some APIs refuse those), then prompted
    (lambda body: (400, {"error": "tools need --enable-auto-tool-choice"}) if body.get("tools") else (200, completion('{"reply": "ok"}')), "prompted", 2),
])
def test_auto_probes_once_per_client_and_picks(server, expected, probes):
    srv = Server(server)
    client = srv.client("auto")

    async def many():
        try:
            return await asyncio.gather(*(client.chat([{"role": "user", "content": f"q{i}"}], tools=[WEATHER]) for i in range(5)))
        finally:
            await client.aclose()

    results = run(many())
    assert {r.tool_calling for r in results} == {expected} and client.tool_calling.resolved == expected
    probe_bodies = [b for b in srv.bodies if "get_weather tool" in json.dumps(b["messages"])]
    assert len(probe_bodies) == probes and len(srv.bodies) == 5 + probes


def test_auto_probe_is_retried_when_the_server_is_down():
    calls = []

    def flaky(body):
        calls.append(body)
        return (503, {"error": "loading"}) if len(calls) == 1 else native_server(body)

    client = Server(flaky).client("auto")

    async def twice():
        try:
            with pytest.raises(Exception, match="503"):
                await client.chat([{"role": "user", "content": "q"}], tools=[WEATHER])
            assert client.tool_calling.resolved is None  # not decided on a failure
            return await client.chat([{"role": "user", "content": "q"}], tools=[WEATHER])
        finally:
            await client.aclose()

    assert run(twice()).tool_calling == "native"


def test_history_rendering_for_models_without_tool_support():
    messages = [
        {"role": "system", "content": "Be helpful."},
        {"role": "user", "content": "Weather in Paris and the time?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "a", "content": "sunny"},
        {"role": "tool", "tool_call_id": "b", "content": "noon"},
        {"role": "assistant", "content": "Sunny, and it is noon."},
        {"role": "user", "content": "Thanks"},
    ]
    out = render_history(messages, [WEATHER, CLOCK], [WEATHER, CLOCK])
    assert [m["role"] for m in out] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert out[0]["content"].startswith("Be helpful.\n\n# Tools") and '"name": "get_time"' in out[0]["content"]
    assert out[2]["content"] == '{"name": "get_weather", "arguments": {"city": "Paris"}}\n{"name": "get_time", "arguments": {}}'
    assert out[3]["content"] == "Result of get_weather: sunny\n\nResult of get_time: noon"
    assert out[4]["content"] == "Sunny, and it is noon." and all(isinstance(m["content"], str) for m in out)
    assert "tool_calls" not in json.dumps(out)


def test_parse_answer_keeps_what_a_cut_answer_has():
    names = {"get_weather"}
    text, calls = parse_answer('{"name": "get_weather", "arguments": {"city": "Par', names)
    assert text is None and calls[0].name == "get_weather" and isinstance(calls[0].arguments, str)  # malformed, recorded
    assert parse_answer('{"reply": "It is sun', names) == ("It is sun", [])
    assert parse_answer("not json at all", names) == ("not json at all", [])
    assert parse_answer('{"name": "other", "arguments": {}}', names)[1] == []


def test_definitions_move_to_the_root():
    tool = {"type": "function", "function": {"name": "book", "parameters": {
        "type": "object", "properties": {"who": {"$ref": "#/$defs/Person"}}, "required": ["who"],
        "$defs": {"Person": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}}}}
    clash = {"type": "function", "function": {"name": "pay", "parameters": {
        "type": "object", "properties": {"who": {"$ref": "#/definitions/Person"}}, "required": ["who"],
        "definitions": {"Person": {"type": "integer"}}}}}
    schema = answer_schema([tool, clash])
    assert set(schema["$defs"]) == {"Person", "pay.Person"}
    jsonschema.validate({"name": "book", "arguments": {"who": {"name": "Ann"}}}, schema)
    jsonschema.validate({"name": "pay", "arguments": {"who": 3}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "pay", "arguments": {"who": {"name": "Ann"}}}, schema)


def test_config_key_and_bad_mode():
    assert client_from_config([Endpoint("http://x/v1", "m")], {"tool_calling": "prompted"}).tool_calling.mode == "prompted"
    assert client_from_config([Endpoint("http://x/v1", "m")], {}).tool_calling.mode == "auto"
    with pytest.raises(ConfigError, match="llm.client.tool_calling='maybe': expected one of 'native', 'prompted', 'auto'"):
        client_from_config([Endpoint("http://x/v1", "m")], {"tool_calling": "maybe"})
