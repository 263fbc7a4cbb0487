"""tau2 scoring without Ray: gold replays score 1, hand-written wrong trajectories score 0
for the component tau2 would fail, and the reward is the product over the reward basis."""
import copy
import importlib.util
import json

import pytest

from matrix_plugin_tau2.env import DOMAINS
from matrix_plugin_tau2.evaluation import evaluate, gold_trajectory, nl_judge_messages, parse_nl_judgement
from matrix_plugin_tau2.tasks import load_tasks

# Assertions that check something the gold actions do not do (a user's own action, or a
# change the task's history leaves to the agent): scored by complete trajectories below.
BEYOND_GOLD = {
    ("mock", "update_task_with_history_and_env_assertions"): "no gold actions; the agent must still mark task_2 completed",
    ("mock", "update_task_with_user_tools"): "the user's dismiss_notification is not a gold action",
}
# Gold actions that themselves fail (a second exchange of one order; a gift card too small):
# tau2 logs them and compares the states anyway; they are noted in info.env.
INCOMPLETE_GOLD = {("retail", "64"), ("retail", "105")}


def _domain_available(name):
    return importlib.util.find_spec(f"matrix_plugin_tau2.domains.{name}") is not None


@pytest.mark.parametrize("domain", DOMAINS)
def test_gold_replay_scores_db_and_env_assertions_1_for_every_task(domain):
    if not _domain_available(domain):
        pytest.skip(f"matrix_plugin_tau2/domains/{domain}.py is not written yet")
    tasks = load_tasks(domain)
    assert tasks
    bad = []
    for task in tasks:
        criteria = task.get("evaluation_criteria") or {}
        info = evaluate(domain, task, gold_trajectory(task, domain), termination_reason="user_stop")
        if "error" in info["info"]:
            bad.append((task["id"], info["info"]["error"]))
            continue
        if (domain, task["id"]) in INCOMPLETE_GOLD:
            assert info["info"]["env"]["gold_actions_failed"]
        # tau2 runs gold actions without telecom's device sync, so a gold replay's user DB can
        # differ from the gold environment's there (db_match False); telecom scores ENV_ASSERTION.
        if "DB" in (criteria.get("reward_basis") or ["DB"]) and info["db_check"]["db_reward"] != 1.0:
            bad.append((task["id"], "db", info["db_check"], (info["info"].get("env") or {})))
        if criteria.get("env_assertions") and (domain, task["id"]) not in BEYOND_GOLD:
            if not all(c["met"] for c in info["env_assertions"]):
                bad.append((task["id"], "env_assertions", [c for c in info["env_assertions"] if not c["met"]]))
        if "ACTION" in (criteria.get("reward_basis") or []) and info["reward_breakdown"].get("ACTION") != 1.0:
            bad.append((task["id"], "action", info["action_checks"]))
    assert not bad, f"{len(bad)} of {len(tasks)} {domain} tasks: {bad[:5]}"


# --- hand-written mock trajectories -------------------------------------------------------


def task(task_id):
    return copy.deepcopy(load_tasks("mock", task_ids=[task_id])[0])


def say(role, text):
    return {"role": role, "content": text}


def call(role, name, args, result, cid, requestor=None):
    return [{"role": role, "content": None, "tool_calls": [{"id": cid, "name": name, "arguments": args}]},
            {"role": "tool", "id": cid, "content": result if isinstance(result, str) else json.dumps(result), "requestor": requestor or role}]


TASK2 = {"task_id": "task_2", "title": "Important Meeting", "description": None, "status": "pending"}


def test_a_correct_trajectory_scores_1_and_a_wrong_title_fails_the_db_check():
    t = task("create_task_1")
    good = [say("assistant", "Hi!"), say("user", "Create 'Important Meeting' for user_1."),
            *call("assistant", "create_task", {"user_id": "user_1", "title": "Important Meeting"}, TASK2, "c1"),
            say("assistant", "Done."), say("user", "###STOP###")]
    info = evaluate("mock", t, good)
    assert info["reward"] == 1.0 and info["reward_breakdown"] == {"DB": 1.0, "COMMUNICATE": 1.0}
    wrong = copy.deepcopy(good)
    wrong[2]["tool_calls"][0]["arguments"]["title"] = "Meeting"
    wrong[3]["content"] = json.dumps({**TASK2, "title": "Meeting"})
    info = evaluate("mock", t, wrong)
    assert info["db_check"]["db_match"] is False and info["reward"] == 0.0


def test_an_extra_write_fails_the_db_check():
    t = task("update_task_1")
    traj = [*call("assistant", "update_task_status", {"task_id": "task_1", "status": "completed"}, {"task_id": "task_1", "title": "Test task", "description": "A test task", "status": "completed"}, "c1"),
            *call("assistant", "create_task", {"user_id": "user_1", "title": "Extra"}, {**TASK2, "title": "Extra"}, "c2")]
    info = evaluate("mock", t, traj)
    assert info["reward_breakdown"]["DB"] == 0.0 and info["reward"] == 0.0


def test_reads_and_failed_calls_do_not_change_the_db():
    t = task("update_task_1")
    traj = [*call("assistant", "get_users", {}, "[]", "r1"),  # a read recorded otherwise: a warning, no state change
            *call("assistant", "update_task_status", {"task_id": "task_9", "status": "completed"}, "Error: Task task_9 not found", "bad"),
            *call("assistant", "update_task_status", {"task_id": "task_1", "status": "completed"}, {"task_id": "task_1", "title": "Test task", "description": "A test task", "status": "completed"}, "c1")]
    assert evaluate("mock", t, traj)["reward"] == 1.0


def test_a_recorded_result_that_differs_is_a_warning_and_the_replayed_state_is_scored():
    t = task("update_task_1")
    traj = call("assistant", "update_task_status", {"task_id": "task_1", "status": "completed"}, {"task_id": "task_1", "status": "pending"}, "c1")
    info = evaluate("mock", t, traj)
    assert info["reward"] == 1.0 and info["db_check"]["db_match"] is True
    [warning] = info["info"]["replay_warnings"]
    assert warning.startswith("tool result differs (content)") and "update_task_status" in warning
    # numbers written as strings (tau2's telecom dicts) differ only in format
    from matrix_plugin_tau2.evaluation import result_difference
    assert result_difference('{"charge": 4.0, "ok": true}', '{"charge": "4.0", "ok": "True"}') == "format"
    assert result_difference('{"charge": 4.0}', '{"charge": "5.0"}') == "content"


def test_action_check_fails_without_the_transfer_and_the_reward_is_the_product():
    t = task("impossible_task_1")  # basis DB, ACTION; compare_args [] : any transfer matches
    refused = [say("assistant", "Sorry, I cannot delete tasks."), say("user", "###STOP###")]
    info = evaluate("mock", t, refused)
    assert info["reward_breakdown"] == {"DB": 1.0, "ACTION": 0.0} and info["reward"] == 0.0
    transferred = [*call("assistant", "transfer_to_human_agents", {"summary": "wants deletion"}, "Transfer successful", "t1"), say("user", "###TRANSFER###")]
    info = evaluate("mock", t, transferred)
    assert info["reward_breakdown"] == {"DB": 1.0, "ACTION": 1.0} and info["reward"] == 1.0
    assert info["action_checks"][0]["tool_type"] == "generic"


def test_action_arguments_compare_the_arguments_the_call_gave():
    t = task("update_task_with_user_tools")  # basis DB, ACTION, ENV_ASSERTION
    traj = call("assistant", "update_task_status", {"task_id": "task_2", "status": "completed"}, "Error: Task task_2 not found", "c1")
    assert evaluate("mock", t, traj)["reward_breakdown"]["ACTION"] == 0.0


def test_communicate_info_must_appear_in_an_assistant_message():
    t = task("update_task_with_initialization_data")  # default basis DB, COMMUNICATE
    infos = t["evaluation_criteria"]["communicate_info"]
    update = call("assistant", "update_task_status", {"task_id": "task_2", "status": "completed"},
                  {"task_id": "task_2", "title": "Project Review", "description": "Review Q4 project status", "status": "completed"}, "c1")
    silent = evaluate("mock", t, update)
    assert silent["reward_breakdown"] == {"DB": 1.0, "COMMUNICATE": 0.0} and silent["reward"] == 0.0
    told = evaluate("mock", t, [*update, say("assistant", " and ".join(i.upper() for i in infos)), say("user", infos[0])])
    assert told["reward"] == 1.0 and all(c["met"] for c in told["communicate_checks"])
    user_said_it = evaluate("mock", t, [*update, say("user", " ".join(infos))])
    assert user_said_it["reward_breakdown"]["COMMUNICATE"] == 0.0  # only the agent's messages count


def test_env_assertions_run_on_the_replayed_environment():
    t = task("update_task_with_history_and_env_assertions")  # basis ENV_ASSERTION; history created task_2
    history = t["initial_state"]["message_history"]
    assert evaluate("mock", t, history)["reward_breakdown"] == {"ENV_ASSERTION": 0.0}
    done = [*history, *call("assistant", "update_task_status", {"task_id": "task_2", "status": "completed"},
                             {"task_id": "task_2", "title": "Project Review", "description": "Review Q4 project status", "status": "completed"}, "c9")]
    info = evaluate("mock", t, done)
    assert info["reward"] == 1.0 and info["env_assertions"][0]["met"] is True


def test_user_tools_change_the_user_db_which_is_compared_too():
    t = task("update_task_with_user_tools")
    update = call("assistant", "update_task_status", {"task_id": "task_1", "status": "completed"},
                  {"task_id": "task_1", "title": "Test task", "description": "A test task", "status": "completed"}, "c1")
    dismiss = call("user", "dismiss_notification", {"notification_id": "notif_1"},
                   {"notification_id": "notif_1", "message": "Task 'Test task' has been assigned to you.", "status": "read", "task_id": "task_1"}, "u1")
    info = evaluate("mock", t, [*update, *dismiss])
    assert info["env_assertions"][0]["met"] is True and info["reward_breakdown"]["ENV_ASSERTION"] == 1.0
    # The gold actions leave the user's inbox alone, so its changed user DB fails the DB check.
    assert info["db_check"] == {"db_match": False, "db_reward": 0.0, "agent_db_match": True, "user_db_match": False}
    info = evaluate("mock", t, update)
    assert info["reward_breakdown"] == {"DB": 1.0, "ACTION": 1.0, "ENV_ASSERTION": 0.0}


@pytest.mark.parametrize("reason", ["max_steps", "too_many_errors", "agent_error"])
def test_premature_termination_scores_0(reason):
    t = task("impossible_task_1")
    traj = [*call("assistant", "transfer_to_human_agents", {"summary": "x"}, "Transfer successful", "t1")]
    assert evaluate("mock", t, traj, termination_reason=reason)["reward"] == 0.0
    assert evaluate("mock", t, traj, termination_reason="agent_stop")["reward"] == 1.0


def test_nl_assertions_are_judged_and_gate_the_reward():
    t = task("create_task_1")
    t["evaluation_criteria"]["reward_basis"] = ["DB", "NL_ASSERTION"]
    traj = [*call("assistant", "create_task", {"user_id": "user_1", "title": "Important Meeting"}, TASK2, "c1"), say("assistant", "Created.")]
    seen = []

    def judge(verdict):
        def answer(messages):
            seen.append(messages)
            return json.dumps({"results": [{"expectedOutcome": "x", "reasoning": "r", "metExpectation": verdict}]})
        return answer

    assert evaluate("mock", t, traj, judge=judge(True))["reward"] == 1.0
    info = evaluate("mock", t, traj, judge=judge(False))
    assert info["reward_breakdown"] == {"DB": 1.0, "NL_ASSERTION": 0.0} and info["reward"] == 0.0
    assert "assistant: Created." in seen[0][1]["content"] and "The agent confirmed the task was created successfully" in seen[0][1]["content"]
    unjudged = evaluate("mock", t, traj)
    assert unjudged["unevaluated"] == ["NL_ASSERTION"] and unjudged["reward_breakdown"] == {"DB": 1.0}
    assert parse_nl_judgement("not json", ["a", "b"]) == [{"nl_assertion": "a", "met": False, "justification": "the judge gave no readable verdict"},
                                                           {"nl_assertion": "b", "met": False, "justification": "the judge gave no readable verdict"}]
    assert nl_judge_messages([say("user", "hi")], ["a"])[1]["content"].startswith("Conversation:\nuser: hi")


def test_openai_format_messages_score_the_same():
    t = task("create_task_1")
    openai = [{"role": "system", "content": "policy"},
              {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "create_task", "arguments": json.dumps({"user_id": "user_1", "title": "Important Meeting"})}}]},
              {"role": "tool", "tool_call_id": "c1", "content": json.dumps(TASK2)}]
    assert evaluate("mock", t, openai)["reward"] == 1.0


def test_no_evaluation_criteria_scores_1():
    t = task("create_task_1")
    t["evaluation_criteria"] = None
    assert evaluate("mock", t, [])["reward"] == 1.0
