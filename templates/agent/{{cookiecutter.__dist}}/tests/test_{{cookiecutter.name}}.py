"""Smoke tests. ``matrix_ray`` and ``plugin_host`` come with matrix-core's pytest plugin."""
import asyncio
import json
from importlib.resources import files

import matrix_core
from matrix_core import AgentContext

from {{ cookiecutter.__module }} import NAME, Scorer, Task

SEED = files("{{ cookiecutter.__module }}").joinpath("data/seed.jsonl")


def test_scorer_sends_a_long_draft_back():
    task = Task.from_row({"prompt": "hi"}, row_key="r", trial=0, config={"max_drafts": 2})
    task.add_turn(role="assistant", agent="writer", content="word " * 50)
    task.state["drafts"] = 1
    scorer = Scorer(AgentContext(role="scorer", config={"min_words": 1, "max_words": 10}))
    asyncio.run(scorer.step(task))
    assert task.state["passed"] is False and task.state["score"] == 0.2
    assert task.next_role() == "writer"


def test_workflow_runs_on_the_fake_llm(matrix_ray, plugin_host, tmp_path):
    out = tmp_path / "out.jsonl"
    summary = matrix_core.run(NAME, ["llm=fake", "output.path=" + str(out), "run.progress=off"])
    rows = [json.loads(line) for line in SEED.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["row_key"] for r in records) == sorted(row["id"] for row in rows)
    assert {r["status"] for r in records} == {"done"}, [r["error"] for r in records if r["error"]]
    assert summary.done == len(rows) and summary.failed == 0
