"""Codegen: an LLM writes a function, the sandbox runs the known tests, failures go back.

Flow per task: coder -> executor -> (coder -> executor ...) until every test passes or
``max_attempts`` attempts were made. The record keeps every attempt (the reply, the code,
each test's outcome, how the run ended) and whether the problem was solved: verified code.

The expected values never enter the sandbox: the harness there only calls the function on
each test's arguments and prints what came back; the comparison happens here.
"""
from __future__ import annotations

import json
import re
import secrets
from typing import Any, Mapping, Sequence

from pydantic import BaseModel, Field

from matrix_core import Agent, AgentOptions, Orchestrator, RunMetrics, SamplingOptions, task_id_for

CODER, EXECUTOR = "coder", "executor"
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)

HARNESS = '''\
import json, sys, traceback
marker, name = sys.argv[1], sys.argv[2]
calls = json.load(open("inputs.json"))
try:
    scope = {"__name__": "solution"}
    exec(compile(open("solution.py").read(), "solution.py", "exec"), scope)
    fn = scope.get(name)
    if not callable(fn):
        out = {"error": f"solution.py defines no function {name}()"}
    else:
        out = []
        for args in calls:
            try:
                out.append({"value": fn(*args)})
            except Exception as exc:
                out.append({"error": f"{type(exc).__name__}: {exc}"})
except BaseException:
    out = {"error": traceback.format_exc(limit=-1).strip()}
sys.stdout.flush()
print("\\n" + marker + json.dumps(out, default=repr))
'''


def problem_from_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """Validates a problem row: function name, description, tests with ``args`` and ``expected``."""
    name = row.get("function")
    if not isinstance(name, str) or not NAME.match(name):
        raise ValueError(f"'function' must be a Python identifier, got {name!r}")
    if not isinstance(row.get("description"), str) or not row["description"].strip():
        raise ValueError("row has no 'description' string")
    tests = row.get("tests")
    if not isinstance(tests, list) or not tests:
        raise ValueError("'tests' must be a non-empty list")
    for i, t in enumerate(tests):
        if not isinstance(t, Mapping) or not isinstance(t.get("args"), list) or "expected" not in t:
            raise ValueError(f"tests[{i}] must be an object with an 'args' list and an 'expected' value")
    visible = int(row.get("visible_tests", min(2, len(tests))))
    return {
        "function": name,
        "signature": str(row.get("signature") or f"def {name}(...):"),
        "description": row["description"].strip(),
        "tests": [{"args": list(t["args"]), "expected": t["expected"]} for t in tests],
        "visible_tests": max(0, min(visible, len(tests))),
    }


def extract_code(text: str | None, function: str) -> str:
    """The code of a reply: the fenced block that defines ``function`` (else the first
    Python block, else the text from ``def function``); empty when there is none."""
    text = text or ""
    blocks = [(lang.lower(), body.strip()) for lang, body in FENCE.findall(text)]
    defining = [b for _, b in blocks if re.search(rf"\bdef\s+{re.escape(function)}\s*\(", b)]
    if defining:
        return defining[0]
    python = [b for lang, b in blocks if lang in ("python", "py", "python3", "")]
    if python and python[0]:
        return python[0]
    m = re.search(rf"^[ \t]*def\s+{re.escape(function)}\s*\(", text, re.M)
    return text[m.start():].strip() if m else ""


def call_text(function: str, args: Sequence[Any]) -> str:
    return f"{function}({', '.join(json.dumps(a) for a in args)})"


class CodegenOptions(BaseModel):
    max_attempts: int = Field(3, ge=1, description="tries per problem (failed tests go back to the coder)")


class CodegenOrchestrator(Orchestrator):
    """``state["attempts"]``: one entry per attempt; at the end ``passed`` and ``num_attempts``."""

    @classmethod
    def from_row(cls, row: Mapping[str, Any], *, row_key: str, trial: int, config: Mapping[str, Any]):
        problem = problem_from_row(row)
        max_attempts = int(config.get("max_attempts", 3))
        if max_attempts < 1:
            raise ValueError(f"max_attempts={max_attempts}: at least one attempt is needed")
        return cls(
            task_id=task_id_for(row_key, trial), row_key=row_key, trial=trial,
            payload={**dict(row), **problem},
            state={"max_attempts": max_attempts, "attempts": [], "pending": None, "finished": False,
                   "passed": False, "num_attempts": 0, "solution": None},
        )

    def next_role(self) -> str | None:
        if self.state["finished"]:
            return None
        return EXECUTOR if self.state["pending"] is not None else CODER

    def record_attempt(self, attempt: dict[str, Any]) -> None:
        attempts = self.state["attempts"]
        attempts.append(attempt)
        self.state["pending"] = None
        self.state["num_attempts"] = len(attempts)
        if attempt["passed"]:
            self.state.update(finished=True, passed=True, solution=attempt["code"])
        elif len(attempts) >= self.state["max_attempts"]:
            self.state["finished"] = True


class Coder(Agent):
    """Writes the function; on a retry it sees its earlier replies and what the tests said.
    ``retry_llm: NAME`` sends the retries to another LLM resource (escalate to a stronger model)."""

    uses_llm = True

    class Options(SamplingOptions):
        system_prompt: str | None = Field(None, description="system message (a worked example helps small models)")
        retry_llm: str | None = Field(None, description="LLM resource for attempts after the first (null: the role's own)")

    def messages(self, problem: Mapping[str, Any], attempts: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
        examples = "\n".join(
            f"{call_text(problem['function'], t['args'])} == {json.dumps(t['expected'])}"
            for t in problem["tests"][: problem["visible_tests"]]
        )
        task = (f"Write a Python function.\n\n{problem['signature']}\n    \"\"\"{problem['description']}\"\"\"\n"
                + (f"\nExamples:\n{examples}\n" if examples else "")
                + "\nReply with the complete function in one ```python code block.")
        system = self.options.system_prompt
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": task})
        for a in attempts:
            messages.append({"role": "assistant", "content": a["reply"] or ""})
            messages.append({"role": "user", "content": a["feedback"] + "\nFix the function and reply with it in one ```python code block."})
        return messages

    async def step(self, orch: Orchestrator) -> None:
        problem = await orch.get_payload()
        llm = self.llm_for(self.options.retry_llm) if self.options.retry_llm and orch.state["attempts"] else self.llm
        result = await llm.chat(self.messages(problem, orch.state["attempts"]), sticky_key=orch.task_id, **self.options.sampling())
        orch.add_turn(result.to_turn(agent=self.context.role))
        orch.state["pending"] = {"reply": result.content or "", "code": extract_code(result.content, problem["function"])}


class Executor(Agent):
    """Runs the pending code against every test in the task's sandbox and books the attempt."""

    uses_runtime = True

    class Options(AgentOptions):
        timeout_s: float = Field(5.0, gt=0, description="per attempt: all tests together")

    async def step(self, orch: Orchestrator) -> None:
        problem = await orch.get_payload()
        pending = orch.state["pending"]
        tests, code = problem["tests"], pending["code"]
        attempt = {"attempt": len(orch.state["attempts"]) + 1, "reply": pending["reply"], "code": code,
                   "passed": False, "tests_passed": 0, "tests_total": len(tests), "results": [], "run": None}
        if not code:
            attempt["feedback"] = "Your reply contained no code."
            orch.record_attempt(attempt)
            return
        box = await self.runtime.acquire(orch.task_id)
        marker = f"@@matrix-{secrets.token_hex(8)}@@"
        await box.write_file("solution.py", code)
        await box.write_file("harness.py", HARNESS)
        await box.write_file("inputs.json", json.dumps([t["args"] for t in tests]))
        run = await box.exec(["python3", "harness.py", marker, problem["function"]], timeout_s=self.options.timeout_s)
        attempt["run"] = {"exit_code": run.exit_code, "killed": run.killed, "duration_s": round(run.duration_s, 4),
                          "stdout": _tail(run.stdout.split(marker)[0], 2000), "stderr": _tail(run.stderr, 2000)}
        outcome = _outcome(run.stdout, marker)
        if isinstance(outcome, list) and len(outcome) == len(tests):
            for t, got in zip(tests, outcome):
                passed = "error" not in got and _same(got.get("value"), t["expected"])
                attempt["results"].append({"args": t["args"], "expected": t["expected"], "got": got.get("value"), "error": got.get("error"), "passed": passed})
            attempt["tests_passed"] = sum(r["passed"] for r in attempt["results"])
            attempt["passed"] = attempt["tests_passed"] == len(tests)
        attempt["feedback"] = _feedback(problem, attempt, run, outcome)
        orch.record_attempt(attempt)


def _outcome(stdout: str, marker: str) -> Any:
    line = next((ln for ln in reversed(stdout.splitlines()) if ln.startswith(marker)), None)
    if line is None:
        return None
    try:
        return json.loads(line[len(marker):])
    except ValueError:
        return None


def _same(got: Any, expected: Any) -> bool:
    try:
        return json.loads(json.dumps(got)) == expected and type(json.loads(json.dumps(got))) is type(expected)
    except (TypeError, ValueError):
        return False


def _tail(text: str, n: int) -> str:
    return text if len(text) <= n else "..." + text[-n:]


def _feedback(problem: Mapping[str, Any], attempt: Mapping[str, Any], run, outcome: Any) -> str:
    if attempt["passed"]:
        return f"All {attempt['tests_total']} tests passed."
    if run.killed == "timeout":
        return f"Running the tests took longer than {run.duration_s:.0f} s: the function never returned (an endless loop?)."
    if run.killed:
        return f"The run was stopped ({run.killed.replace('_', ' ')})."
    if isinstance(outcome, dict):
        return f"The code does not work:\n{_tail(outcome['error'], 1200)}"
    if outcome is None:
        return f"The code crashed:\n{_tail(run.stderr.strip(), 1200) or 'exit code ' + str(run.exit_code)}"
    lines, hidden_failed = [], 0
    for i, r in enumerate(attempt["results"]):
        if r["passed"]:
            continue
        if i >= problem["visible_tests"]:
            hidden_failed += 1
        elif r["error"]:
            lines.append(f"{call_text(problem['function'], r['args'])} raised {r['error']}")
        else:
            lines.append(f"{call_text(problem['function'], r['args'])} returned {json.dumps(r['got'], default=repr)}, expected {json.dumps(r['expected'])}")
    if hidden_failed:
        lines.append(f"{hidden_failed} more test(s) failed.")
    return f"{attempt['tests_passed']} of {attempt['tests_total']} tests passed.\n" + "\n".join(lines)


class CodegenMetrics(RunMetrics):
    def __init__(self, config: Mapping[str, Any]):
        self.problems = self.failed = self.passed = self.first = self.attempts = self.no_code = self.killed = 0
        self.completion = 0

    def add(self, record: Mapping[str, Any]) -> None:
        state = record.get("state") or {}
        if record.get("status") != "done" or not state.get("finished"):
            self.failed += 1
            return
        self.problems += 1
        attempts = state.get("attempts") or []
        self.passed += bool(state.get("passed"))
        self.first += bool(attempts and attempts[0]["passed"])
        self.attempts += len(attempts)
        self.no_code += sum(not a["code"] for a in attempts)
        self.killed += sum(bool((a.get("run") or {}).get("killed")) for a in attempts)
        self.completion += sum((t.get("usage") or {}).get("completion_tokens", 0) for t in record.get("history") or [])

    def result(self) -> dict[str, Any]:
        n = max(self.problems, 1)
        return {
            "problems": self.problems,
            "failed": self.failed,
            "pass_rate": self.passed / n,
            "first_attempt_pass_rate": self.first / n,
            "mean_attempts": self.attempts / n,
            "no_code_rate": self.no_code / max(self.attempts, 1),
            "killed_runs": self.killed,
            "completion_tokens_per_problem": self.completion / n,
        }
