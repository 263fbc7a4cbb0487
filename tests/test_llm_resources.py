"""Named LLM resources: several models in one run, each role on its own (issue 14)."""
from __future__ import annotations

import re
import subprocess
import sys
from contextlib import contextmanager

import httpx
import pytest

import matrix_core
from matrix_core import ConfigError
from matrix_core._private.resources import DEFAULT, plan_resources, price, summarize
from matrix_core.config import compose
from matrix_core.plugins import get_plugin_host
from matrix_core.testing import read_records


@contextmanager
def standalone_simllm(model: str):
    """A simllm server in its own process (no Ray): its counters outlive the run under test."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "matrix_plugin_simllm", "--port", "0", "--model", model, "--time-scale", "100",
         "--output-tokens-dist", "fixed", "--output-tokens-mean", "8"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert f"model {model})" in line, proc.stderr.read() if proc.poll() is not None else line
        yield line.split()[3]
    finally:
        proc.terminate()
        proc.wait(30)


def answered(base_url: str) -> int:
    """Chat requests this server answered, from its own Prometheus counters."""
    text = httpx.get(base_url[: -len("/v1")] + "/metrics", timeout=10).text
    return sum(int(float(m)) for m in re.findall(r'^simllm_requests_total\{[^}]*outcome="ok"[^}]*\} (\S+)$', text, re.M))


def test_two_servers_as_two_resources_each_role_calls_only_its_own(matrix_ray, tmp_path):
    out = tmp_path / "d.jsonl"
    with standalone_simllm("alpha") as a, standalone_simllm("beta") as b:
        summary = matrix_core.run("dialogue", [
            "llm=endpoint", f"llm.base_url={a}",
            "+llm@llms.beta=endpoint", f"llms.beta.base_url={b}", "agents.answerer.llm=beta",
            # Declared but named by no role: never started (its URL answers nothing).
            "+llm@llms.unused=endpoint", "llms.unused.base_url=http://127.0.0.1:9/v1",
            "dataset.limit=4", "rounds=2", f"output.path={out}", "run.progress=off",
        ])
        on_a, on_b = answered(a), answered(b)
    records = read_records(out)
    assert summary.done == 4 and summary.failed == 0
    turns = [t for r in records for t in r["history"]]
    assert {(t["agent"], t["meta"]["llm"]["resource"], t["meta"]["llm"]["model"]) for t in turns} == {
        ("questioner", DEFAULT, "alpha"), ("answerer", "beta", "beta")}
    asked = sum(t["agent"] == "questioner" for t in turns)
    replied = sum(t["agent"] == "answerer" for t in turns)
    assert asked == replied == 8
    # Every call each server saw came from its own role, and from nowhere else.
    assert (on_a, on_b) == (asked, replied)
    llm = summary.llm
    assert set(llm["resources"]) == {DEFAULT, "beta"}  # "unused" was never started
    assert llm["resources"][DEFAULT]["calls"] == on_a and llm["resources"]["beta"]["calls"] == on_b
    assert llm["roles"]["questioner"]["resources"] == [DEFAULT] and llm["roles"]["answerer"]["resources"] == ["beta"]
    assert llm["roles"]["answerer"]["completion_tokens"] == sum(t["usage"]["completion_tokens"] for t in turns if t["agent"] == "answerer")
    assert llm["resources"]["beta"]["models"] == ["beta"] and llm["resources"]["beta"]["failed"] == 0
    text = summary.text()
    assert f"llm beta [endpoint beta]: {on_b} calls, 0 failed" in text and "role questioner -> default" in text


def test_tau2_user_simulator_and_assistant_on_separate_resources(matrix_ray, tmp_path):
    """The user simulator on a simllm server the run starts (and stops), the assistant on the fake."""
    out = tmp_path / "t.jsonl"
    summary = matrix_core.run("tau2", [
        "llm=fake", "+llm@llms.user=simllm", "llms.user.model=user-sim", "llms.user.time_scale=100",
        "agents.user.stop_after=2", "dataset.limit=3", f"output.path={out}", "run.progress=off",
    ])
    records = read_records(out)
    assert summary.done == 3 and summary.failed == 0
    for r in records:
        spoken = [t for t in r["history"] if t.get("usage")]
        assert {t["agent"] for t in spoken} == {"user", "assistant"}
        for t in spoken:
            assert t["meta"]["llm"] == ({"resource": "user", "model": "user-sim"} if t["agent"] == "user"
                                        else {"resource": DEFAULT, "model": "fake-echo"})
        assert r["reward"] is not None and r["usage"]["user"]["prompt_tokens"] > 0
    llm = summary.llm
    assert llm["resources"]["user"]["backend"] == "simllm" and llm["resources"]["user"]["roles"] == ["user"]
    assert llm["resources"][DEFAULT]["roles"] == ["assistant", "evaluator"]  # assistant and judge default to one
    assert llm["roles"]["user"]["calls"] == sum(t["agent"] == "user" and bool(t.get("usage")) for r in records for t in r["history"])
    # The run deployed the user simulator (a Serve application of its own) and deleted it.
    from matrix_core._private.serving import PER_RUN_PREFIX, app_names

    assert not [a for a in app_names() if a.startswith(PER_RUN_PREFIX)]


# --- checked before anything starts -------------------------------------------------------


def _plan(workflow: str, overrides: list[str]):
    from matrix_core._private.driver import _roles
    from matrix_core.options import validate

    host = get_plugin_host()
    conf = validate(compose(workflow, overrides), host)
    return plan_resources(conf.raw, host, _roles(conf, 1))


def test_aliases_share_one_resource_and_unused_ones_are_not_planned():
    res = _plan("tau2", ["llm=fake", "+llm@llms.big=simllm", "llms.judge=big", "+llm@llms.spare=simllm"])
    assert res.used == [DEFAULT, "big"]
    assert res.roles_of("big") == ["evaluator"] and res.roles_of(DEFAULT) == ["assistant", "user"]
    # The heuristic filter calls no LLM; in llm mode it calls its role's resource.
    assert "filter" not in _plan("naturalreasoning", ["llm=fake"]).role_llm
    res = _plan("naturalreasoning", ["llm=fake", "filter.mode=llm", "+llm@llms.small=fake", "agents.filter.llm=small"])
    assert res.role_llm["filter"] == "small" and res.used == [DEFAULT, "small"]


def test_a_resource_attaches_to_a_service_by_name():
    res = _plan("dialogue", ["llm=fake", "+llms.teacher=service:smol", "agents.answerer.llm=teacher"])
    assert res.used == [DEFAULT, "teacher"] and res.roles_of("teacher") == ["answerer"]
    section = res.configs["teacher"]
    assert (section["backend"], section["name"]) == ("service", "smol") and section["client"]["tool_calling"] == "auto"


@pytest.mark.parametrize("overrides, message", [
    (["llm=fake", "+llms.teacher=service:", "agents.answerer.llm=teacher"], "llms.teacher=service: names no service"),
    (["llm=fake", "agents.answerer.llm=judge"], "agents.answerer.llm: role 'answerer' names LLM resource 'judge', which is not defined; defined: default"),
    (["llm=fake", "+llms.big.backend=nope", "agents.answerer.llm=big"], "llms.big.backend: unknown LLM backend 'nope' for resource 'big'"),
    (["llm=simllm", "llm.port=8700", "+llm@llms.big=simllm", "llms.big.port=8700", "agents.answerer.llm=big"],
     "LLM resources 'default' (llm) and 'big' (llms.big) would both start a server on port 8700"),
    (["llm=fake", "+llms.a=b", "+llms.b=a"], "aliases go round in a circle"),
    (["llm=fake", "+llm@llms.default=fake"], "llms.default: the name is reserved"),
    (["llm=fake", "+agents.answerer.llm.model=x"], "agents.answerer.llm={'model': 'x'}: expected a string or null"),
])
def test_bad_resources_are_one_line_errors(overrides, message):
    with pytest.raises(ConfigError) as err:
        _plan("dialogue", overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_cli_bad_resource_exits_2_with_one_line_before_anything_starts():
    proc = subprocess.run(["matrix", "run", "coral", "llm=fake", "agents.bob.llm=teacher"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "matrix: error: agents.bob.llm: role 'bob' names LLM resource 'teacher', which is not defined; defined: default"]


def test_cli_resource_that_fails_to_start_names_itself(tmp_path):
    proc = subprocess.run(
        ["matrix", "run", "dialogue", "llm=fake", "+llm@llms.teacher=endpoint", "llms.teacher.base_url=http://127.0.0.1:9/v1",
         "agents.answerer.llm=teacher", f"output.path={tmp_path / 'x.jsonl'}", "run.num_cpus=1"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("matrix: error:")]
    assert errors == ["matrix: error: LLM resource 'teacher' (llms.teacher, endpoint) failed to start: "
                      "LLM endpoint http://127.0.0.1:9/v1 does not answer (ConnectError); is the server running?"]


def test_cost_from_litellms_local_price_map():
    assert price("gpt-4o-mini") is not None and price("openai/gpt-4o-mini") == price("gpt-4o-mini")
    assert price("simllm") is None
    res = _plan("dialogue", ["llm=fake", "+llm@llms.mini=fake", "agents.answerer.llm=mini"])
    rows = [
        {"resource": DEFAULT, "role": "questioner", "model": "fake-echo", "calls": 2, "failed": 0, "prompt_tokens": 10,
         "completion_tokens": 5, "latency_sum_s": 1.0, "latency_max_s": 0.6},
        {"resource": "mini", "role": "answerer", "model": "gpt-4o-mini", "calls": 3, "failed": 1, "prompt_tokens": 1000,
         "completion_tokens": 100, "latency_sum_s": 3.0, "latency_max_s": 2.0},
    ]
    llm = summarize(rows, res)
    prompt_usd, completion_usd = price("gpt-4o-mini")
    assert llm["resources"]["mini"]["cost_usd"] == pytest.approx(1000 * prompt_usd + 100 * completion_usd)
    assert llm["resources"][DEFAULT]["cost_usd"] is None  # the echo has no price
    assert llm["roles"]["answerer"] == {**llm["roles"]["answerer"], "calls": 3, "failed": 1, "tokens": 1100, "latency_mean_s": 1.0, "latency_max_s": 2.0}


def test_every_two_model_command_in_the_readmes_is_valid():
    """The multi-model commands the READMEs show compose and pass the resource checks."""
    import shlex
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    checked = set()
    for readme in [root / "README.md", *sorted(root.glob("plugins/agents/*/README.md"))]:
        for line in readme.read_text().replace("\\\n", " ").splitlines():
            if line.startswith("matrix run") and "+llm@llms." in line:
                workflow, *overrides = shlex.split(line.split("#")[0])[2:]
                res = _plan(workflow, overrides)
                assert len(res.used) >= 2, line
                checked.add(workflow)
    assert checked >= {"coral", "tau2", "naturalreasoning", "codegen", "dialogue"}
