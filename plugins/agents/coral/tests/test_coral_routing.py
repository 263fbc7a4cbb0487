"""Routing and bookkeeping of one dialogue, in-process: scripted speakers, the real extractor."""
import asyncio
import json

import httpx
import pytest

from matrix_core import AgentContext, ConfigError, LLMClient, Turn, Usage
from matrix_core.testing import FAKE_ENDPOINT
from matrix_plugin_coral import CoralOrchestrator, Extractor, Reasoner

ROW = {"question_id": 7, "question": "What is 40 + 2?", "options": ["40", "42", "44", "46"], "answer": "B"}


class Scripted(Reasoner):
    """Says the next reply of its script, and remembers the prompt it was given."""

    uses_llm = False

    def __init__(self, context, script):
        super().__init__(context)
        self.script = list(script)
        self.prompts = []

    async def respond(self, orch, payload, turns):
        self.prompts.append(self.messages(payload, turns))
        return Turn(role="assistant", agent=self.context.role, content=self.script.pop(0), usage=Usage(prompt_tokens=20, completion_tokens=5))


def dialogue(alice, bob, row=ROW, max_turns=6, extractor=None):
    orch = CoralOrchestrator.from_row(row, row_key=str(row.get("question_id", 0)), trial=0, config={"max_turns": max_turns})
    agents = {
        "alice": Scripted(AgentContext(role="alice", config={}), alice),
        "bob": Scripted(AgentContext(role="bob", config={}), bob),
        "extractor": extractor or Extractor(AgentContext(role="extractor", config={"mode": "parser"})),
    }
    route = []

    async def go():
        while (role := orch.next_role()) is not None:
            route.append(role)
            await agents[role].step(orch)

    asyncio.run(go())
    return orch, route, agents


def test_agreement_after_two_turns_ends_the_dialogue():
    orch, route, _ = dialogue(["40 + 2 = 42. Answer: B"], ["I agree, the answer is (B)."])
    assert route == ["alice", "extractor", "bob", "extractor"]
    s = orch.state
    assert [(t["agent"], t["answer"], t["agrees"]) for t in s["turns"]] == [("alice", "B", False), ("bob", "B", True)]
    assert s["agreement"] is True and s["final_answer"] == "B" and s["correct"] is True and s["num_turns"] == 2
    assert [t.agent for t in orch.history] == ["alice", "bob"]


def test_disagreement_runs_until_max_turns():
    orch, route, _ = dialogue(["Answer: A", "Answer: A"], ["Answer: C", "No. Answer: C"], max_turns=4)
    assert route == ["alice", "extractor", "bob", "extractor"] * 2
    s = orch.state
    assert [t["answer"] for t in s["turns"]] == ["A", "C", "A", "C"] and not any(t["agrees"] for t in s["turns"])
    assert s["agreement"] is False and s["num_turns"] == 4
    assert s["final_answer"] == "C" and s["correct"] is False  # the latest stated answer stands


def test_a_partner_can_change_the_others_mind():
    orch, route, _ = dialogue(["Answer: A", "You are right, the answer is B."], ["40 + 2 is 42, not 40. Answer: B"])
    assert len(route) == 6 and orch.state["agreement"] is True and orch.state["num_turns"] == 3
    assert orch.state["correct"] is True and orch.state["first_correct"] is False


def test_a_turn_without_an_answer_never_agrees():
    orch, _, _ = dialogue(["Hmm, let me think.", "Answer: B"], ["I am not sure either.", "Answer: B"], max_turns=6)
    turns = orch.state["turns"]
    assert [t["answer"] for t in turns] == [None, None, "B", "B"]
    assert [t["agrees"] for t in turns] == [False, False, False, True]  # two unreadable turns do not "agree"
    assert orch.state["agreement"] is True and orch.state["num_turns"] == 4


def test_a_bare_agreement_takes_the_partners_answer():
    orch, _, _ = dialogue(["40 + 2 = 42. Answer: B"], ["Alice is right."])
    turns = orch.state["turns"]
    assert [(t["answer"], t["extracted_by"]) for t in turns] == [("B", "parser"), ("B", "agreement")]
    assert orch.state["agreement"] is True and orch.state["num_turns"] == 2


def test_a_bare_objection_states_no_answer():
    orch, _, _ = dialogue(["Answer: B", "Answer: B"], ["Alice is wrong.", "Answer: B"], max_turns=4)
    assert [t["answer"] for t in orch.state["turns"]] == ["B", None, "B", "B"] and orch.state["num_turns"] == 4


def test_no_answer_at_all_is_not_correct():
    orch, _, _ = dialogue(["..."] * 2, ["?"] * 2, max_turns=4)
    assert orch.state["final_answer"] is None and orch.state["correct"] is False and orch.state["agreement"] is False


def test_free_form_answers_compare_numerically():
    row = {"question": "Tom has 12 apples and gets 7 more. How many now?", "answer": "19"}
    orch, _, _ = dialogue(["12 + 7 = 19. Answer: 19"], ["I agree: 19.0 apples. Answer: 19.0"], row=row)
    assert orch.state["kind"] == "free" and orch.state["agreement"] is True and orch.state["correct"] is True


def test_each_speaker_sees_the_question_and_the_partner_as_user():
    _, _, agents = dialogue(["Answer: A", "Answer: A"], ["Answer: C", "Answer: A"])
    bob_second = agents["bob"].prompts[1]
    assert [m["role"] for m in bob_second] == ["user", "assistant", "user"]
    assert "What is 40 + 2?" in bob_second[0]["content"] and "B. 42" in bob_second[0]["content"]
    assert "Alice" in bob_second[0]["content"] and bob_second[1]["content"] == "Answer: C"
    alice_second = agents["alice"].prompts[1]
    assert [m["role"] for m in alice_second] == ["user", "assistant", "user"] and "Answer: C" in alice_second[2]["content"]


@pytest.mark.parametrize(
    "row, message",
    [
        ({"options": ["a", "b"], "answer": "A"}, "no 'question'"),
        ({"question": "q?", "options": ["a", "b"], "answer": "C"}, "not one of the option letters A-B"),
        ({"question": "q?", "options": [str(i) for i in range(11)], "answer": "A"}, "at most 10"),
        ({"question": "q?"}, "no 'answer'"),
    ],
)
def test_unusable_rows_are_rejected(row, message):
    with pytest.raises(ValueError, match=message):
        CoralOrchestrator.from_row(row, row_key="1", trial=0, config={})


def test_answer_index_stands_in_for_a_missing_letter():
    orch = CoralOrchestrator.from_row({"question": "q?", "options": ["x", "y", "z"], "answer_index": 2}, row_key="1", trial=0, config={})
    assert orch.state["gold"] == "C"


def test_max_turns_below_two_is_rejected():
    with pytest.raises(ValueError, match="max_turns=1"):
        CoralOrchestrator.from_row(ROW, row_key="1", trial=0, config={"max_turns": 1})


def test_unknown_extractor_mode_is_a_config_error():
    with pytest.raises(ConfigError, match="agents.extractor.mode='regex': expected one of 'parser', 'llm'"):
        Extractor(AgentContext(role="extractor", config={"mode": "regex"}))


def json_llm(answer_text, seen):
    def handle(request):
        body = json.loads(request.content)
        seen.append(body)
        content = json.dumps({"answer": answer_text})
        return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": content}}], "usage": {"prompt_tokens": 30, "completion_tokens": 6}})

    return LLMClient([FAKE_ENDPOINT], transport=httpx.MockTransport(handle))


def test_llm_extractor_asks_for_structured_output():
    seen = []
    extractor = Extractor(AgentContext(role="extractor", config={"mode": "llm"}, llm=json_llm("(b) 42", seen)))
    orch, _, _ = dialogue(["It is probably the second one."], ["Yes, the second."], extractor=extractor)
    schema = seen[0]["response_format"]["json_schema"]["schema"]
    assert schema["properties"] == {"answer": {"type": "string"}} and schema["required"] == ["answer"]
    assert "It is probably the second one." in seen[0]["messages"][-1]["content"]
    assert [t["answer"] for t in orch.state["turns"]] == ["B", "B"] and orch.state["turns"][0]["extracted_by"] == "llm"
    # The extractor's calls are in the record (tokens), but not in what the speakers see.
    assert [t.agent for t in orch.history] == ["alice", "extractor", "bob", "extractor"]


def test_llm_extractor_falls_back_to_the_parser_without_json(fake_llm):
    extractor = Extractor(AgentContext(role="extractor", config={"mode": "llm"}, llm=fake_llm))  # the fake echoes, no JSON
    orch, _, _ = dialogue(["Answer: B"], ["Answer: B"], extractor=extractor)
    assert [(t["answer"], t["extracted_by"]) for t in orch.state["turns"]] == [("B", "parser-fallback")] * 2
    assert orch.state["agreement"] is True
