"""NaturalReasoning curation: filter -> scorer -> question generator, one task per document.

The second case study of the Matrix paper (arXiv 2511.21686). The ``filter`` drops passages
that are not English prose or unlikely to hold reasoning, by heuristics (``mode: heuristic``,
no LLM) or, as in the paper, by asking a small model (``mode: llm``, JSON); the ``scorer``
(LLM, JSON rubric) drops those scoring under a threshold; the ``generator`` (LLM, JSON)
writes a question, its reference answer and the reasoning steps. Every document ends in
the output once: kept ones with their question, rejected ones with the stage and reason
(``rejects: record``) or only their id, stage and reason (``rejects: count``; the id is
what lets a resumed run skip it).
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Any, Literal, Mapping, Sequence

from pydantic import Field

from matrix_core import Agent, ConfigError, LLMResult, Orchestrator, RunMetrics, SamplingOptions, task_id_for

from .heuristics import judge

FILTER, SCORER, GENERATOR = "filter", "scorer", "generator"
STAGES = (FILTER, SCORER, GENERATOR)
RUBRIC = ("reasoning", "clarity", "self_contained")
SCORE_SCHEMA = {
    "type": "object",
    "properties": {k: {"type": "integer", "enum": [1, 2, 3, 4, 5]} for k in RUBRIC},
    "required": list(RUBRIC),
    "additionalProperties": False,
}
CLASSIFY = ("english", "reasoning")
FILTER_SCHEMA = {
    "type": "object",
    "properties": {k: {"type": "boolean"} for k in CLASSIFY},
    "required": list(CLASSIFY),
    "additionalProperties": False,
}
QUESTION_SCHEMA = {
    "type": "object",
    "properties": {
        "question": {"type": "string"},
        "reference_answer": {"type": "string"},
        "reasoning_steps": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 6},
    },
    "required": ["question", "reference_answer", "reasoning_steps"],
    "additionalProperties": False,
}
def check_config(config: Mapping[str, Any]) -> list[str]:
    """The workflow's own keys; returns the stages. Called once per run (by the metrics) and per row."""
    stages = list(config.get("stages") or STAGES)
    if not stages or any(s not in STAGES for s in stages):
        raise ConfigError(f"stages={stages}: each must be one of {', '.join(STAGES)}")
    for key, allowed in (("rejects", ("record", "count")), ("unparseable", ("reject", "pass"))):
        if config.get(key) is not None and config[key] not in allowed:
            raise ConfigError(f"{key}={config[key]!r}: must be {' or '.join(allowed)}")
    return stages


class NROrchestrator(Orchestrator):
    """Carries one document; ``state`` says how far it got and why it stopped."""

    @classmethod
    def from_row(cls, row: Mapping[str, Any], *, row_key: str, trial: int, config: Mapping[str, Any]):
        field = str((config.get("dataset") or {}).get("text_field") or "text")
        text = row.get(field)
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"row has no {field!r} text")
        stages = check_config(config)
        return cls(
            task_id=task_id_for(row_key, trial), row_key=row_key, trial=trial,
            payload={**dict(row), "text": text},
            state={"stages": stages, "passed": [], "kept": None, "rejected_at": None, "reason": None,
                   "rejects": str(config.get("rejects") or "record")},
        )

    def next_role(self) -> str | None:
        s = self.state
        if s["rejected_at"] is not None:
            return None
        return next((stage for stage in s["stages"] if stage not in s["passed"]), None)

    def passed(self, stage: str, **info: Any) -> None:
        self.state["passed"].append(stage)
        self.state.update(info)
        if set(self.state["passed"]) >= set(self.state["stages"]):
            self.state["kept"] = True

    def reject(self, stage: str, reason: str, **info: Any) -> None:
        self.state.update(info, kept=False, rejected_at=stage, reason=reason)
        if self.state["rejects"] == "count":
            # Only what the funnel and resume need: no text, no replies (their token counts stay).
            self.payload = {"doc_id": self.row_key}
            for turn in self.history:
                turn.content = None


async def passage(orch: Orchestrator, max_chars: int) -> str:
    text = (await orch.get_payload())["text"]
    return text if len(text) <= max_chars else text[:max_chars].rsplit(" ", 1)[0] + " ..."


class _LLMStage(Agent):
    uses_llm = True
    stage = ""
    schema: Mapping[str, Any] = {}

    class Options(SamplingOptions):
        system_prompt: str = Field(description="system message")
        prompt: str = Field(description="the request; {passage} is the (cut) document")
        max_doc_chars: int = Field(1500, ge=1, description="the passage is cut here in prompts")
        unparseable: Literal["reject", "pass"] = Field("reject", description="what a reply that is not the JSON asked for does")

    def __init__(self, context):
        super().__init__(context)
        self.on_unparseable = self.options.unparseable

    async def ask(self, orch: NROrchestrator, prompt: str) -> tuple[LLMResult, Any]:
        messages = [{"role": "system", "content": self.options.system_prompt}, {"role": "user", "content": prompt}]
        result = await self.llm.chat(messages, json_schema=self.schema, sticky_key=orch.task_id, **self.options.sampling())
        orch.add_turn(result.to_turn(agent=self.context.role))
        try:
            return result, json.loads(result.content or "")
        except ValueError:
            return result, None

    def unparseable(self, orch: NROrchestrator, result: LLMResult, what: str, **info: Any) -> None:
        why = f"unparseable {what}" + (" (cut at max_tokens)" if result.finish_reason == "length" else "")
        if self.on_unparseable == "pass":  # a server without structured output (simulated LLM): the flow goes on
            orch.passed(self.stage, **info, **{f"{self.stage}_note": why})
        else:
            orch.reject(self.stage, why, **info)


class Filter(_LLMStage):
    """``mode: heuristic``: language and reasoning-likelihood rules, no LLM call. ``mode: llm``: the
    paper's filter, a (small) model classifies the passage as English and holding reasoning."""

    stage, schema = FILTER, FILTER_SCHEMA

    class Options(_LLMStage.Options):
        mode: Literal["heuristic", "llm"] = Field("heuristic", description="heuristic: the rules below | llm: a model classifies")
        system_prompt: str = Field("", description="llm mode: system message")
        prompt: str = Field("{passage}", description="llm mode: the request; {passage} is the (cut) document")
        min_chars: int = Field(200, ge=0, description="shorter documents are rejected")
        max_chars: int = Field(20000, ge=1, description="longer documents are rejected")
        min_ascii_letters: float = Field(0.9, ge=0, le=1, description="English: share of letters that are ASCII")
        min_stopwords: float = Field(0.15, ge=0, le=1, description="share of words that are English function words")
        max_code_lines: float = Field(0.4, ge=0, le=1, description="share of lines that look like code")
        min_reasoning: float = Field(0.45, ge=0, le=1, description="reasoning-likelihood score in [0, 1]")

    @staticmethod
    def uses_llm(options: Mapping[str, Any]) -> bool:  # the run starts an LLM for this role only in llm mode
        return options.get("mode") == "llm"

    async def step(self, orch: NROrchestrator) -> None:
        if self.options.mode == "heuristic":
            result = judge((await orch.get_payload())["text"], self.options.model_dump())
            if result.keep:
                orch.passed(FILTER, filter=result.signals)
            else:
                orch.reject(FILTER, result.reason, filter=result.signals)
            return
        text = await passage(orch, self.options.max_doc_chars)
        result, reply = await self.ask(orch, self.options.prompt.replace("{passage}", text))
        labels = {k: reply.get(k) for k in CLASSIFY} if isinstance(reply, dict) else None
        if labels is None or not all(isinstance(v, bool) for v in labels.values()):
            return self.unparseable(orch, result, "classification", filter=None)
        if all(labels.values()):
            orch.passed(FILTER, filter=labels)
        else:
            orch.reject(FILTER, "not " + " and not ".join(k for k, v in labels.items() if not v), filter=labels)


class Scorer(_LLMStage):
    """Rates the passage on a 1-5 rubric (JSON); keeps it when the mean reaches ``min_score``."""

    stage, schema = SCORER, SCORE_SCHEMA

    class Options(_LLMStage.Options):
        min_score: float = Field(3.0, ge=1, le=5, description="mean rubric score (1-5) a passage needs to go on")

    async def step(self, orch: NROrchestrator) -> None:
        text = await passage(orch, self.options.max_doc_chars)
        result, reply = await self.ask(orch, self.options.prompt.replace("{passage}", text))
        scores = _scores(reply)
        if scores is None:
            return self.unparseable(orch, result, "scores", scores=None, score=None)
        score = round(sum(scores.values()) / len(scores), 3)
        threshold = self.options.min_score
        if score >= threshold:
            orch.passed(SCORER, scores=scores, score=score)
        else:
            orch.reject(SCORER, f"score {score} < {threshold}", scores=scores, score=score)


def _scores(reply: Any) -> dict[str, int] | None:
    if not isinstance(reply, dict):
        return None
    scores = {}
    for key in RUBRIC:
        value = reply.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value <= 5:
            return None
        scores[key] = int(value)
    return scores


class Generator(_LLMStage):
    """Writes a question the passage can answer, its reference answer and the reasoning steps."""

    stage, schema = GENERATOR, QUESTION_SCHEMA

    async def step(self, orch: NROrchestrator) -> None:
        text = await passage(orch, self.options.max_doc_chars)
        result, reply = await self.ask(orch, self.options.prompt.replace("{passage}", text))
        item = _question(reply)
        if item is None:
            return self.unparseable(orch, result, "question", question=None)
        orch.passed(GENERATOR, **item)


def _question(reply: Any) -> dict[str, Any] | None:
    if not isinstance(reply, dict):
        return None
    question, answer, steps = reply.get("question"), reply.get("reference_answer"), reply.get("reasoning_steps")
    if not isinstance(question, str) or not question.strip() or not isinstance(answer, str) or not answer.strip():
        return None
    if not isinstance(steps, list) or not steps or not all(isinstance(s, str) and s.strip() for s in steps):
        return None
    return {"question": question.strip(), "reference_answer": answer.strip(), "reasoning_steps": [s.strip() for s in steps]}


class NRMetrics(RunMetrics):
    """The funnel: documents in, kept after each stage, questions out, tokens per stage."""

    def __init__(self, config: Mapping[str, Any]):
        self.stages: Sequence[str] = check_config(config)  # the driver builds this before any task: bad keys stop the run once
        self.docs = self.failed = self.questions = 0
        self.kept: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.tokens: Counter[str] = Counter()

    def add(self, record: Mapping[str, Any]) -> None:
        self.docs += 1
        state = record.get("state") or {}
        for turn in record.get("history") or []:
            usage = turn.get("usage") or {}
            self.tokens[turn.get("agent") or "?"] += usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
            self.tokens["prompt"] += usage.get("prompt_tokens", 0)
            self.tokens["completion"] += usage.get("completion_tokens", 0)
        if record.get("status") != "done":
            self.failed += 1
            return
        for stage in state.get("passed") or []:
            self.kept[stage] += 1
        if state.get("rejected_at"):
            # "score 2.3 < 3.0" and "score 1.7 < 3.0" are one reason.
            self.reasons[f"{state['rejected_at']}: {str(state.get('reason')).split(' (')[0].split(' <')[0]}"] += 1
        if GENERATOR in (state.get("passed") or []):
            self.questions += 1  # with unparseable=pass (simulated LLMs) the reply counts unparsed

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {"documents_in": self.docs, "failed": self.failed}
        for stage in self.stages:
            out[f"kept_after_{stage}"] = self.kept[stage]
        out["questions_out"] = self.questions
        out["survival_rate"] = self.questions / self.docs if self.docs else 0.0
        out["prompt_tokens"] = self.tokens["prompt"]
        out["completion_tokens"] = self.tokens["completion"]
        for stage in self.stages:
            if stage != FILTER or self.tokens[FILTER]:  # the heuristic filter spends none
                out[f"tokens_{stage}"] = self.tokens[stage]
        out["top_rejections"] = ", ".join(f"{k} x{v}" for k, v in self.reasons.most_common(4)) or "none"
        return out

    def plots(self) -> list[tuple[str, Any]]:
        from matrix_core import report_figure

        fig, ax = report_figure("Funnel")
        labels = ["documents in", *(f"kept after {s}" for s in self.stages), "questions out"]
        values = [self.docs, *(self.kept[s] for s in self.stages), self.questions]
        ax.barh(labels[::-1], values[::-1], color="#4c72b0")
        ax.set_xlabel("documents")
        plots = [("NaturalReasoning funnel", fig)]
        if self.reasons:
            fig, ax = report_figure("Rejections")
            top = self.reasons.most_common(8)[::-1]
            ax.barh([k for k, _ in top], [v for _, v in top], color="#c44e52")
            plots.append(("NaturalReasoning rejections", fig))
        return plots
