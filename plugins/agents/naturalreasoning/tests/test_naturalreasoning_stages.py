"""Each stage on its own: the filter's heuristics, the scorer and generator on scripted replies, the metrics."""
import asyncio
import json

import httpx
import pytest

from matrix_core import AgentContext, ConfigError, LLMClient
from matrix_core.testing import FAKE_ENDPOINT
from matrix_plugin_naturalreasoning import Filter, Generator, NRMetrics, NROrchestrator, Scorer, judge

REASONING = (
    "If the pressure in a sealed container rises, the temperature must rise as well, because the gas obeys the ideal "
    "gas law. Therefore, when we double the temperature of a fixed volume, the pressure doubles: P1/T1 = P2/T2. "
    "Suppose the gas starts at 300 K and 100 kPa; then at 600 K it is at 200 kPa. This follows since the number "
    "of molecules and the volume stay the same, so the ratio of pressure to temperature is constant."
)
PLAIN = (
    "The museum is open on weekdays and the shop sells postcards, books and small gifts for the visitors of the "
    "city. The cafe on the ground floor has a terrace with a view of the river and the old bridge near the park."
)
CONFIG = {"stages": ["filter", "scorer", "generator"], "rejects": "record"}


def task(text, **config):
    return NROrchestrator.from_row({"text": text, "doc_id": "s:1"}, row_key="s:1", trial=0, config={**CONFIG, **config})


def test_heuristics_keep_reasoning_and_say_why_they_reject():
    assert judge(REASONING, {}).keep
    cases = {
        "short": ("Too short to matter.", "too short"),
        "plain": (PLAIN, "unlikely to hold reasoning"),
        "foreign": ("Если давление в сосуде растёт, то температура тоже растёт, потому что газ подчиняется закону. " * 4, "not English prose"),
        "code": ("\n".join([">>> import os", ">>> os.path.join('a', 'b')", "'a/b'", "def f(x):", "    return x", "class A:", "import sys"] * 6), "mostly code"),
    }
    for name, (text, reason) in cases.items():
        result = judge(text, {})
        assert not result.keep and result.reason.startswith(reason), (name, result)
    assert judge(REASONING, {"min_reasoning": 0.99}).reason.startswith("unlikely")


def run_step(agent_cls, orch, replies=None, **config):
    """One step of an agent, its LLM answering ``replies`` in order (a scripted endpoint)."""
    sent = []

    def handle(request):
        body = json.loads(request.content)
        sent.append(body)
        content = replies.pop(0)
        return httpx.Response(200, json={"choices": [{"message": {"content": content}, "finish_reason": "stop"}],
                                         "usage": {"prompt_tokens": 30, "completion_tokens": 9}})

    async def go():
        llm = LLMClient([FAKE_ENDPOINT], transport=httpx.MockTransport(handle), max_retries=0) if replies is not None else None
        cfg = {"system_prompt": "sys", "prompt": "Rate:\n{passage}", **config}
        agent = agent_cls(AgentContext(role=agent_cls.stage if hasattr(agent_cls, "stage") and agent_cls.stage else "filter", config=cfg, llm=llm))
        await agent.step(orch)

    asyncio.run(go())
    return sent


def test_filter_stage_moves_a_reasoning_passage_on_and_records_signals():
    orch = task(REASONING)
    assert orch.next_role() == "filter"
    run_step(Filter, orch)
    assert orch.state["passed"] == ["filter"] and orch.next_role() == "scorer"
    assert orch.state["filter"]["reasoning"] >= 0.45
    plain = task(PLAIN)
    run_step(Filter, plain)
    assert plain.next_role() is None and plain.state["rejected_at"] == "filter" and plain.state["kept"] is False


def test_llm_filter_classifies_with_the_model_and_rejects_with_the_reason():
    keep, drop, garbled = task(PLAIN), task(REASONING), task(REASONING)
    # In llm mode the model decides, whatever the heuristics would say.
    sent = run_step(Filter, keep, ['{"english": true, "reasoning": true}'], mode="llm")
    assert sent[0]["response_format"]["json_schema"]["schema"]["required"] == ["english", "reasoning"]
    assert PLAIN in sent[0]["messages"][1]["content"]
    assert keep.state["passed"] == ["filter"] and keep.state["filter"] == {"english": True, "reasoning": True}
    run_step(Filter, drop, ['{"english": true, "reasoning": false}'], mode="llm")
    assert drop.state["rejected_at"] == "filter" and drop.state["reason"] == "not reasoning"
    run_step(Filter, garbled, ["maybe"], mode="llm")
    assert garbled.state["rejected_at"] == "filter" and garbled.state["reason"] == "unparseable classification"
    assert [t.agent for t in keep.history] == ["filter"]  # the reply is kept for token accounting
    with pytest.raises(ConfigError, match="mode=.classifier.: expected one of .heuristic., .llm."):
        Filter(AgentContext(role="filter", config={"mode": "classifier"}))
    assert Filter.uses_llm({"mode": "llm"}) and not Filter.uses_llm({"mode": "heuristic"})


def test_scorer_keeps_above_threshold_rejects_below_and_sends_the_schema():
    good, bad = task(REASONING), task(REASONING)
    for orch in (good, bad):
        orch.passed("filter")
    sent = run_step(Scorer, good, ['{"reasoning": 5, "clarity": 4, "self_contained": 3}'], min_score=3.5)
    assert sent[0]["response_format"]["json_schema"]["schema"]["required"] == ["reasoning", "clarity", "self_contained"]
    assert REASONING[:100] in sent[0]["messages"][-1]["content"]
    assert good.state["score"] == 4.0 and good.next_role() == "generator"
    run_step(Scorer, bad, ['{"reasoning": 2, "clarity": 3, "self_contained": 3}'], min_score=3.5)
    assert bad.state["rejected_at"] == "scorer" and bad.state["reason"] == "score 2.667 < 3.5"
    assert bad.history[-1].usage.prompt_tokens == 30  # the reply is kept, with its cost


@pytest.mark.parametrize("reply", ["not json", '{"reasoning": 9, "clarity": 1, "self_contained": 1}', '{"reasoning": 3}', "[1, 2]"])
def test_an_unparseable_score_is_a_recorded_rejection_not_a_crash(reply):
    orch = task(REASONING)
    orch.passed("filter")
    run_step(Scorer, orch, [reply])
    assert orch.state["rejected_at"] == "scorer" and orch.state["reason"] == "unparseable scores"
    passing = task(REASONING)
    passing.passed("filter")
    run_step(Scorer, passing, [reply], unparseable="pass")
    assert passing.next_role() == "generator" and passing.state["scorer_note"] == "unparseable scores"


def test_generator_writes_question_answer_and_steps():
    orch = task(REASONING)
    orch.passed("filter")
    orch.passed("scorer")
    item = {"question": " What is the pressure at 600 K? ", "reference_answer": "200 kPa", "reasoning_steps": ["P/T is constant", "100 * 2"]}
    sent = run_step(Generator, orch, [json.dumps(item)])
    assert "reasoning_steps" in sent[0]["response_format"]["json_schema"]["schema"]["properties"]
    assert orch.next_role() is None and orch.state["kept"] is True
    assert (orch.state["question"], orch.state["reference_answer"], orch.state["reasoning_steps"]) == ("What is the pressure at 600 K?", "200 kPa", ["P/T is constant", "100 * 2"])
    broken = task(REASONING)
    broken.passed("filter")
    broken.passed("scorer")
    run_step(Generator, broken, ['{"question": "Why?", "reference_answer": "", "reasoning_steps": []}'])
    assert broken.state["rejected_at"] == "generator" and broken.state["reason"] == "unparseable question"


def test_count_mode_keeps_only_id_stage_reason_and_token_counts():
    orch = task(REASONING, rejects="count")
    orch.passed("filter")
    run_step(Scorer, orch, ['{"reasoning": 1, "clarity": 1, "self_contained": 1}'])
    record = asyncio.run(orch.to_record())
    assert record["payload"] == {"doc_id": "s:1"} and REASONING[:30] not in json.dumps(record)
    assert record["history"][0]["usage"] == {"prompt_tokens": 30, "completion_tokens": 9}
    assert record["state"]["rejected_at"] == "scorer"


def test_bad_rows_and_bad_config_are_clear():
    with pytest.raises(ValueError, match="row has no 'text' text"):
        NROrchestrator.from_row({"body": "x"}, row_key="s:2", trial=0, config=CONFIG)
    with pytest.raises(ConfigError, match="each must be one of"):
        task(REASONING, stages=["filter", "summarise"])
    with pytest.raises(ConfigError, match="rejects='some': must be record or count"):
        NRMetrics({"rejects": "some"})  # built by the driver before any task: one error, not one per row
    with pytest.raises(ConfigError, match="agents.scorer.unparseable='maybe': expected one of 'reject', 'pass'"):
        Scorer(AgentContext(role="scorer", config={"system_prompt": "s", "prompt": "p", "unparseable": "maybe"}))


def record(passed, rejected_at=None, reason=None, question=None, status="done", usage=(10, 2)):
    history = [{"agent": s, "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1]}} for s in passed + ([rejected_at] if rejected_at else []) if s != "filter"]
    return {"status": status, "history": history, "state": {"passed": passed, "rejected_at": rejected_at, "reason": reason, "question": question}}


def test_metrics_count_the_funnel_and_tokens_per_stage():
    m = NRMetrics({"stages": ["filter", "scorer", "generator"]})
    m.add(record([], "filter", "too short (12 < 200 chars)"))
    m.add(record([], "filter", "too short (40 < 200 chars)"))
    m.add(record(["filter"], "scorer", "score 2.0 < 3.0"))
    m.add(record(["filter", "scorer", "generator"], question="Why?"))
    m.add(record(["filter", "scorer"], "generator", "unparseable question"))
    m.add({"status": "failed", "state": {"dataset_row": "x row 3"}, "history": []})
    r = m.result()
    assert (r["documents_in"], r["failed"], r["kept_after_filter"], r["kept_after_scorer"], r["kept_after_generator"], r["questions_out"]) == (6, 1, 3, 2, 1, 1)
    assert r["survival_rate"] == pytest.approx(1 / 6)
    assert r["tokens_scorer"] == 3 * 12 and r["tokens_generator"] == 2 * 12 and r["prompt_tokens"] == 50 and r["completion_tokens"] == 10
    assert r["top_rejections"].startswith("filter: too short x2")
