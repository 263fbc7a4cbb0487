"""Coral: two reasoners discuss a question until their extracted answers agree.

Flow per task: alice -> extractor -> bob -> extractor -> alice ... The extractor reads the
answer out of the last reply and records it in ``state["turns"]``; the dialogue ends when
the last two answers (one from each agent) agree, or after ``max_turns`` replies.
"""
from __future__ import annotations

import json
import re
from typing import Any, Literal, Mapping, Sequence

from pydantic import BaseModel, Field

from matrix_core import Agent, AgentOptions, LLMResult, Orchestrator, RunMetrics, SamplingOptions, Turn, task_id_for

from .answers import LETTERS, extract_answer, normalize, read_answer, same_answer, states_agreement

ALICE, BOB, EXTRACTOR = "alice", "bob", "extractor"
SPEAKERS = (ALICE, BOB)
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
    "additionalProperties": False,
}


def question_from_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """Validates an MMLU-Pro style row; returns question, options and the canonical gold answer."""
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ValueError("row has no 'question' string")
    options = row.get("options") or []
    if not isinstance(options, list) or not all(isinstance(o, (str, int, float)) for o in options):
        raise ValueError("'options' must be a list of strings")
    if len(options) > len(LETTERS):
        raise ValueError(f"{len(options)} options: at most {len(LETTERS)} (A-J) are supported")
    options = [str(o) for o in options]
    answer, index = row.get("answer"), row.get("answer_index")
    if options:
        if answer in (None, "") and isinstance(index, int) and not isinstance(index, bool):
            answer = LETTERS[index] if 0 <= index < len(options) else None
        gold = normalize(answer, options)
        if gold is None or gold not in LETTERS[: len(options)]:
            raise ValueError(f"answer {answer!r} is not one of the option letters A-{LETTERS[len(options) - 1]}")
    else:
        gold = normalize(answer)
        if gold is None:
            raise ValueError("row has no 'answer'")
    return {"question": question.strip(), "options": options, "gold": gold}


class CoralOptions(BaseModel):
    max_turns: int = Field(6, ge=2, description="replies before a discussion ends without agreement (agreement needs 2)")


class CoralOrchestrator(Orchestrator):
    """Carries the question; ``state`` holds one record per reply and, at the end, the outcome."""

    @classmethod
    def from_row(cls, row: Mapping[str, Any], *, row_key: str, trial: int, config: Mapping[str, Any]):
        parsed = question_from_row(row)
        max_turns = int(config.get("max_turns", 6))
        if max_turns < 2:
            raise ValueError(f"max_turns={max_turns}: agreement needs at least 2 turns")
        return cls(
            task_id=task_id_for(row_key, trial),
            row_key=row_key,
            trial=trial,
            payload={**dict(row), "question": parsed["question"], "options": parsed["options"]},
            state={
                "gold": parsed["gold"],
                "kind": "choice" if parsed["options"] else "free",
                "max_turns": max_turns,
                "turns": [],         # {"agent", "answer", "agrees", "extracted_by"} per reply
                "pending": None,     # the speaker whose reply awaits extraction
                "finished": False,
                "agreement": None,
                "final_answer": None,
                "correct": None,
                "first_correct": None,
                "num_turns": 0,
            },
        )

    def next_role(self) -> str | None:
        if self.state["pending"]:
            return EXTRACTOR
        if self.state["finished"]:
            return None
        return SPEAKERS[len(self.state["turns"]) % 2]

    def record_answer(self, answer: str | None, **extra: Any) -> None:
        """Books the pending reply's answer and decides whether the dialogue is over."""
        turns = self.state["turns"]
        agent = self.state["pending"] or SPEAKERS[len(turns) % 2]
        agrees = bool(turns) and same_answer(turns[-1]["answer"], answer)
        turns.append({"agent": agent, "answer": answer, "agrees": agrees, **extra})
        self.state["pending"] = None
        if agrees or len(turns) >= self.state["max_turns"]:
            self._finish()

    def _finish(self) -> None:
        turns = self.state["turns"]
        agreed = bool(turns) and turns[-1]["agrees"]
        # Without agreement the latest stated answer stands (a later reply has seen more).
        final = turns[-1]["answer"] if agreed else next((t["answer"] for t in reversed(turns) if t["answer"] is not None), None)
        self.state.update(
            finished=True,
            agreement=agreed,
            final_answer=final,
            correct=same_answer(final, self.state["gold"]),
            first_correct=bool(turns) and same_answer(turns[0]["answer"], self.state["gold"]),
            num_turns=len(turns),
        )


def fill(template: str, fields: Mapping[str, str]) -> str:
    """Substitutes ``{name}`` for known names only: prompts may hold other braces (``\\boxed{}``, JSON)."""
    return re.sub(r"\{(\w+)\}", lambda m: str(fields[m.group(1)]) if m.group(1) in fields else m.group(0), template)


def format_options(options: Sequence[str]) -> str:
    return "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))


class Reasoner(Agent):
    """One side of the discussion. Sees its own replies as ``assistant``, the partner's as ``user``.

    Every partner reply is wrapped in the same ``reply_prompt``, so each agent's prompt only
    grows at the end (the server's prefix cache keeps earlier turns).
    """

    uses_llm = True

    class Options(SamplingOptions):
        system_prompt: str | None = Field(None, description="system message; {partner}, {answer_format}")
        question_prompt: str = Field("{question}{options}\n\nEnd with 'Answer: <{answer_format}>'.",
                                     description="the question; {question}, {options}, {answer_format}")
        reply_prompt: str = Field("{partner} says:\n{reply}\n\nDo you agree? End with 'Answer: <{answer_format}>'.",
                                  description="wraps each partner reply; {reply}, {partner}, {answer_format}")
        partner: str | None = Field(None, description="the partner's name in prompts (default: the other role)")
        choice_format: str = Field("option letter", description="{answer_format} for multiple-choice questions")
        free_format: str = Field("number", description="{answer_format} for free-form questions")

    def messages(self, payload: Mapping[str, Any], turns: Sequence[Turn]) -> list[dict[str, str]]:
        opt, me = self.options, self.context.role
        options = payload.get("options") or []
        fields = {
            "question": payload["question"],
            "options": ("\nOptions:\n" + format_options(options)) if options else "",
            "answer_format": opt.choice_format if options else opt.free_format,
            "partner": opt.partner or next((s for s in SPEAKERS if s != me), "partner").title(),
        }
        messages = [{"role": "system", "content": fill(opt.system_prompt, fields)}] if opt.system_prompt else []
        messages.append({"role": "user", "content": fill(opt.question_prompt, fields)})
        wrap = opt.reply_prompt
        for turn in turns:
            if turn.agent == me:
                messages.append({"role": "assistant", "content": turn.content or ""})
                continue
            text = fill(wrap, {**fields, "reply": turn.content or ""})
            if messages[-1]["role"] == "user":  # the opener's first reply follows the question
                messages[-1]["content"] += "\n\n" + text
            else:
                messages.append({"role": "user", "content": text})
        return messages

    async def respond(self, orch: Orchestrator, payload: Mapping[str, Any], turns: Sequence[Turn]) -> Turn:
        result: LLMResult = await self.llm.chat(self.messages(payload, turns), sticky_key=orch.task_id, **self.options.sampling())
        turn = result.to_turn(agent=self.context.role)
        turn.content = (result.content or "").strip()
        return turn

    async def step(self, orch: Orchestrator) -> None:
        payload = await orch.get_payload()
        turns = [t for t in await orch.conversation() if t.agent in SPEAKERS]
        orch.add_turn(await self.respond(orch, payload, turns))
        orch.state["pending"] = self.context.role


class Extractor(Agent):
    """Reads the final answer of the pending reply: regex parser (default) or the LLM (``mode: llm``)."""

    @staticmethod
    def uses_llm(options: Mapping[str, Any]) -> bool:  # the run starts an LLM for this role only in llm mode
        return options.get("mode") == "llm"

    class Options(AgentOptions):
        mode: Literal["parser", "llm"] = Field("parser", description="parser: regex; llm: the model answers JSON")
        prompt: str = Field(
            "Question: {question}{options}\n\nReply: {reply}\n\nWhat final answer does the reply give? "
            "Give {hint}, or an empty string if it gives none.",
            description="llm mode: the request; {question}, {options}, {reply}, {hint}")
        system_prompt: str = Field("You extract answers. Reply with JSON only.", description="llm mode: system message")
        max_tokens: int = Field(32, ge=1, description="llm mode: longest reply, in tokens")
        temperature: float = Field(0.0, ge=0, description="llm mode: sampling temperature")

    def __init__(self, context):
        super().__init__(context)
        self.mode = self.options.mode

    async def step(self, orch: Orchestrator) -> None:
        pending = orch.state["pending"]
        payload = await orch.get_payload()
        reply = next((t for t in reversed(await orch.conversation()) if t.agent == pending), None)
        text = reply.content if reply is not None else ""
        options = payload.get("options") or []
        if self.mode == "parser":
            answer, how = extract_answer(text, options), "parser"
        else:
            answer, how = await self.ask(orch, payload, text, options)
        turns = orch.state["turns"]
        if answer is None and turns and states_agreement(text):
            # "Bob is right." states Bob's answer without repeating it.
            answer, how = turns[-1]["answer"], "agreement"
        orch.record_answer(answer, extracted_by=how)

    async def ask(self, orch: Orchestrator, payload: Mapping[str, Any], text: str, options: Sequence[str]) -> tuple[str | None, str]:
        hint = "the option letter" if options else "just the final number or short answer"
        prompt = fill(
            self.options.prompt,
            {"question": payload["question"], "options": ("\n" + format_options(options)) if options else "", "reply": text, "hint": hint},
        )
        messages = [{"role": "system", "content": self.options.system_prompt}, {"role": "user", "content": prompt}]
        result = await self.llm.chat(
            messages,
            json_schema=ANSWER_SCHEMA,
            max_tokens=self.options.max_tokens,
            temperature=self.options.temperature,
            sticky_key=orch.task_id,
        )
        turn = result.to_turn(agent=EXTRACTOR)  # kept for token accounting; speakers never see it
        orch.add_turn(turn)
        try:
            said = json.loads(result.content or "")["answer"]
        except (ValueError, KeyError, TypeError):
            # A server without structured output (or a truncated reply): the parser still works.
            return extract_answer(text, options), "parser-fallback"
        said = str(said).strip()
        answer = (read_answer(said, options) or extract_answer(said, options)) if said else None
        return answer, "llm"


class CoralMetrics(RunMetrics):
    """Accuracy, agreement and cost over the dialogues that finished."""

    def __init__(self, config: Mapping[str, Any]):
        self.dialogues = self.failed = self.correct = self.first_correct = self.agreed = 0
        self.turns = self.unextracted = self.completion = self.total = 0

    def add(self, record: Mapping[str, Any]) -> None:
        state = record.get("state") or {}
        if record.get("status") != "done" or not state.get("finished"):
            self.failed += 1
            return
        self.dialogues += 1
        self.correct += bool(state.get("correct"))
        self.first_correct += bool(state.get("first_correct"))
        self.agreed += bool(state.get("agreement"))
        self.turns += int(state.get("num_turns") or 0)
        self.unextracted += sum(t.get("answer") is None for t in state.get("turns") or [])
        for turn in record.get("history") or []:
            usage = turn.get("usage") or {}
            self.completion += usage.get("completion_tokens", 0)
            self.total += usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)

    def result(self) -> dict[str, Any]:
        n = max(self.dialogues, 1)
        return {
            "dialogues": self.dialogues,
            "failed": self.failed,
            "accuracy": self.correct / n,
            "first_answer_accuracy": self.first_correct / n,
            "agreement_rate": self.agreed / n,
            "mean_turns": self.turns / n,
            "unextracted_answer_rate": self.unextracted / max(self.turns, 1),
            "completion_tokens_per_dialogue": self.completion / n,
            "total_tokens_per_dialogue": self.total / n,
        }

    def plots(self) -> list[tuple[str, Any]]:
        from matrix_core import report_figure

        r = self.result()
        fig, ax = report_figure("Accuracy and agreement")
        names = ["accuracy", "first_answer_accuracy", "agreement_rate"]
        ax.bar(["final answer\naccuracy", "first answer\naccuracy", "agreement"], [r[k] for k in names], color=["#55a868", "#4c72b0", "#dd8452"])
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"share of {self.dialogues} dialogues")
        return [("Coral accuracy and agreement", fig)]
