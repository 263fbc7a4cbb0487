"""A two-role dialogue workflow: the first real workflow, end to end on the embedded model."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel, Field

from matrix_core import (
    Agent, AgentSpec, ConfigDirSpec, Orchestrator, RunMetrics, SamplingOptions, TaskState, WorkflowSpec, hookimpl,
)

QUESTIONER, ANSWERER = "questioner", "answerer"


class DialogueState(TaskState):
    rounds: int = Field(2, ge=1, description="answers before the dialogue ends")
    answers: int = 0


class DialogueOptions(BaseModel):
    """The workflow's own keys, checked when the run starts."""

    rounds: int = Field(2, ge=1, description="answers before the dialogue ends")


class DialogueOrchestrator(Orchestrator):
    """Questioner and answerer alternate until ``rounds`` answers have been given."""

    state: DialogueState = Field(default_factory=DialogueState)

    @classmethod
    def map_row(cls, row: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(row.get("topic"), str) or not row["topic"].strip():
            raise ValueError("row has no 'topic' string")
        return {"payload": {"topic": row["topic"]}, "state": DialogueState(rounds=int(config.get("rounds", 2)))}

    def next_role(self) -> str | None:
        if self.state.answers >= self.state.rounds:
            return None
        last = self.history[-1].agent if self.history else None
        return ANSWERER if last == QUESTIONER else QUESTIONER


class _Speaker(Agent):
    """Sees its own turns as ``assistant`` and the other role's as ``user``."""

    uses_llm = True

    class Options(SamplingOptions):
        system_prompt: str = Field("", description="the speaker's system message")
        max_tokens: int = Field(96, ge=1, description="longest reply, in tokens")
        temperature: float = Field(0.7, ge=0, description="sampling temperature")

    def messages(self, topic: str, turns: list) -> list[dict[str, str]]:
        role = self.context.role
        messages = [{"role": "system", "content": self.options.system_prompt}]
        messages += [{"role": "assistant" if t.agent == role else "user", "content": t.content or ""} for t in turns]
        return messages

    async def step(self, orch: Orchestrator) -> None:
        payload = await orch.get_payload()
        result = await self.llm.chat(
            self.messages(payload["topic"], await orch.conversation()),
            sticky_key=orch.task_id,
            **self.options.sampling(),
        )
        text = (result.content or "").strip()
        if not text:
            raise ValueError(f"{self.context.role} produced an empty reply")
        turn = result.to_turn(agent=self.context.role)
        turn.content = text
        orch.add_turn(turn)
        self.after(orch)

    def after(self, orch: Orchestrator) -> None:
        pass


class Questioner(_Speaker):
    """Opens with a question on the topic; later asks a follow-up to the last answer."""

    class Options(_Speaker.Options):
        ask_prompt: str = Field("Ask one short question about {topic}.", description="the opening request; {topic}")
        follow_up_prompt: str = Field("{answer}\n\nAsk one short follow-up question about this.",
                                      description="wraps the last answer; {answer}, {topic}")

    def messages(self, topic: str, turns: list) -> list[dict[str, str]]:
        ask = self.options.ask_prompt.format(topic=topic)
        if not turns:
            return [{"role": "system", "content": self.options.system_prompt}, {"role": "user", "content": ask}]
        follow = self.options.follow_up_prompt
        messages = super().messages(topic, turns)
        messages.insert(1, {"role": "user", "content": ask})
        messages[-1]["content"] = follow.format(answer=messages[-1]["content"], topic=topic)
        return messages


class Answerer(_Speaker):
    def after(self, orch: Orchestrator) -> None:
        orch.state.answers += 1


class DialogueMetrics(RunMetrics):
    """Mean turns and tokens per finished dialogue."""

    def __init__(self, config: Mapping[str, Any]):
        self.dialogues = self.turns = self.tokens = 0

    def add(self, record: Mapping[str, Any]) -> None:
        if record["status"] != "done":
            return
        self.dialogues += 1
        self.turns += len(record["history"])
        self.tokens += sum((t.get("usage") or {}).get("completion_tokens", 0) for t in record["history"])

    def result(self) -> dict[str, Any]:
        n = max(self.dialogues, 1)
        return {"dialogues": self.dialogues, "mean_turns": self.turns / n, "completion_tokens_per_dialogue": self.tokens / n}


@hookimpl
def register_workflows(register):
    register(WorkflowSpec("dialogue", DialogueOrchestrator, "a questioner and an answerer discuss seed topics", metrics=DialogueMetrics, options=DialogueOptions))


@hookimpl
def register_agents(register):
    register(AgentSpec("dialogue.questioner", Questioner, "asks a question or a follow-up"))
    register(AgentSpec("dialogue.answerer", Answerer, "answers the last question"))


@hookimpl
def register_config_dirs(register):
    register(ConfigDirSpec("dialogue", Path(__file__).parent / "conf", "dialogue.yaml"))
