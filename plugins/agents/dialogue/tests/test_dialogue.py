import asyncio
import json
from importlib.resources import files

import pytest

from matrix_core import AgentContext, task_id_for
from matrix_core.testing import assert_exactly_once, read_records
from matrix_plugin_dialogue import Answerer, DialogueOrchestrator, Questioner


def test_rows_without_a_topic_are_rejected():
    with pytest.raises(ValueError, match="no 'topic'"):
        DialogueOrchestrator.from_row({"id": 1}, row_key="1", trial=0, config={})


def test_each_speaker_sees_its_own_turns_as_assistant(fake_llm):
    orch = DialogueOrchestrator.from_row({"topic": "tides"}, row_key="t", trial=0, config={"rounds": 1})
    questioner = Questioner(AgentContext(role="questioner", config={"system_prompt": "Q"}, llm=fake_llm))
    answerer = Answerer(AgentContext(role="answerer", config={"system_prompt": "A"}, llm=fake_llm))

    async def dialogue():
        try:
            while (role := orch.next_role()) is not None:
                await {"questioner": questioner, "answerer": answerer}[role].step(orch)
        finally:
            await fake_llm.aclose()

    asyncio.run(dialogue())
    assert [t.agent for t in orch.history] == ["questioner", "answerer"]
    assert orch.state.answers == 1 and all(t.usage.completion_tokens > 0 for t in orch.history)
    # The fake echoes the last user message: the answerer's last user turn was the question.
    assert orch.history[0].content in orch.history[1].content


def test_runs_on_the_fake_llm(matrix_ray, tmp_path):
    import matrix_core

    out = tmp_path / "d.jsonl"
    summary = matrix_core.run("dialogue", ["llm=fake", f"output.path={out}", "run.progress=off"])
    records = read_records(out)
    assert summary.done == 24 and summary.failed == 0
    # The ids come from the seed file, not the output: a lost or extra task fails here.
    seed = files("matrix_plugin_dialogue").joinpath("data/topics.jsonl").read_text().splitlines()
    assert_exactly_once(records, [task_id_for(str(json.loads(line)["id"]), 0) for line in seed if line.strip()])
    assert all(len(r["history"]) == 4 for r in records)
    assert summary.metrics["dialogues"] == 24 and summary.metrics["mean_turns"] == 4.0
    assert summary.metrics["completion_tokens_per_dialogue"] > 0
    assert "mean_turns: 4" in summary.text()
