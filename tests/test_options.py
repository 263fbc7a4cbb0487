"""Typed options: one source of defaults, one line per bad value, --help from the models."""
import subprocess

import pytest
import yaml

import matrix_core
from matrix_core import ConfigError, RunOptions, WorkflowSpec, hookimpl
from matrix_core.config import compose
from matrix_core.options import LLMClientOptions, base_node, validate
from matrix_core.plugins import get_plugin_host
from matrix_core.testing import assert_exactly_once, read_records


def check(workflow, *overrides):
    return validate(compose(workflow, list(overrides)), get_plugin_host())


@pytest.mark.parametrize(
    "workflow, override, line",
    [
        ("relay", "run.max_concurrent_tasks=abc", "run.max_concurrent_tasks='abc': expected an integer >= 1"),
        ("relay", "run.hosts=0", "run.hosts=0: expected an integer >= 1 and <= 4096 or 'auto'"),
        ("relay", "run.progress=fast", "run.progress='fast': expected one of 'auto', 'bar', 'lines', 'off'"),
        ("relay", "run.task_timeout_s=0", "run.task_timeout_s=0: expected a number > 0 or null"),
        ("relay", "dataset.limit=-1", "dataset.limit=-1: expected an integer >= 0 or null"),
        ("relay", "resume.retry_failed=maybe", "resume.retry_failed='maybe': expected true or false"),
        ("relay", "+agents.a.replicas=two", "agents.a.replicas='two': expected an integer >= 1 and <= 4096 or null"),
        ("relay", "agents.a.sleep_ms=-5", "agents.a.sleep_ms=-5: expected a number >= 0"),  # an agent's own option
        ("dialogue", "llm.client.timeout_s=-1", "llm.client.timeout_s=-1: expected a number > 0"),
        ("dialogue", "agents.answerer.max_tokens=0", "agents.answerer.max_tokens=0: expected an integer >= 1"),
        ("coral", "agents.extractor.mode=regex", "agents.extractor.mode='regex': expected one of 'parser', 'llm'"),
    ],
)
def test_a_bad_value_is_one_line_naming_key_value_and_expectation(workflow, override, line):
    overrides = [override] + (["llm=fake"] if workflow != "relay" else [])
    with pytest.raises(ConfigError) as caught:
        check(workflow, *overrides)
    assert str(caught.value) == line


@pytest.mark.parametrize("override", ["run.batch_max=0", "run.outstanding_per_peer=0", "run.health_check_s=0", "agents.a.max_in_flight=0"])
def test_an_explicit_zero_that_makes_no_sense_is_rejected_not_replaced_by_a_default(override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"^{key}=0: expected (an integer >= 1|a number > 0)$"):
        check("relay", override)


def test_an_explicit_zero_that_means_off_reaches_the_run_plan():
    from matrix_core._private import driver

    conf = check("relay", "run.offload_threshold_bytes=0", "run.checkpoint_every=0")
    plan = driver._plan(conf, get_plugin_host().get("workflow", "relay"), driver._roles(conf, 1), 1, [])
    assert plan.offload_threshold_bytes == 0 and plan.checkpoint_every == 0
    assert plan.max_steps == RunOptions().max_steps == 100


def test_defaults_live_in_the_models_only():
    from importlib.resources import files

    base = yaml.safe_load(files("matrix_core.conf").joinpath("matrix_base.yaml").read_text())
    assert not {"run", "resume", "dataset", "output", "llm"} & set(base), "defaults belong in matrix_core/options.py"
    cfg = compose("relay")
    expected = {**RunOptions().model_dump(), "max_concurrent_tasks": 1024, "progress": "lines"}  # relay.yaml sets these
    assert cfg["run"] == expected
    assert cfg["llm"]["client"] == LLMClientOptions().model_dump() == base_node()["llm"]["client"]


def test_a_key_that_does_not_exist_is_still_an_error():
    with pytest.raises(ConfigError, match="Could not override 'run.max_step'"):
        compose("relay", ["run.max_step=5"])


def test_the_console_script_reports_a_bad_value_in_one_line():
    proc = subprocess.run(["matrix", "run", "relay", "run.max_concurrent_tasks=abc"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == ["matrix: error: run.max_concurrent_tasks='abc': expected an integer >= 1"]


def test_run_help_lists_each_roles_typed_options_and_the_run_options():
    proc = subprocess.run(["matrix", "run", "dialogue", "--help"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()

    def row(name, after):
        start = lines.index(after)
        return next(line.split() for line in lines[start:] if line.split()[:1] == [name])

    assert row("max_concurrent_tasks", "run:")[1:4] == ["int", ">=", "1"]
    assert "agents.questioner (dialogue.questioner: asks a question or a follow-up):" in lines
    ask = row("ask_prompt", "agents.questioner (dialogue.questioner: asks a question or a follow-up):")
    assert ask[1] == "str" and "opening request" in " ".join(ask)
    assert row("max_tokens", "agents.questioner (dialogue.questioner: asks a question or a follow-up):")[1:5] == ["int", ">=", "1", "48"]
    assert "Configuration groups" in proc.stdout  # Hydra's own help follows


class InlineWorkflow:
    """A plugin whose workflow carries its config: no yaml file anywhere."""

    @hookimpl
    def register_workflows(self, register):
        from matrix_plugin_relay import RelayOrchestrator

        register(WorkflowSpec("relay-inline", RelayOrchestrator, "relay, configured in code", defaults={
            "defaults": [{"sink": "jsonl"}],
            "laps": 1,
            "dataset": {"loader": "range", "size": 12},
            "agents": {role: {"type": "relay.stamp", "max_in_flight": 4} for role in ("a", "b", "c")},
        }))


def test_a_workflow_without_a_yaml_file_runs(matrix_ray, plugin_host, tmp_path):
    plugin_host.register(InlineWorkflow(), "inline", "test-inline")
    out = tmp_path / "inline.jsonl"
    assert compose("relay-inline")["workflow"] == "relay-inline"
    summary = matrix_core.run("relay-inline", [f"output.path={out}", "run.progress=off", "dataset.size=9"])
    assert summary.done == 9
    records = read_records(out)
    assert_exactly_once(records, [f"{i}#0" for i in range(9)])
    assert all([v[0] for v in r["state"]["visits"]] == ["a", "b", "c"] for r in records)
