"""A two-role dialogue workflow: the first real workflow, end to end on the embedded model."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from matrix_core import Agent, AgentSpec, ConfigDirSpec, Orchestrator, Turn, WorkflowSpec, hookimpl, task_id_for

QUESTIONER, ANSWERER = "questioner", "answerer"


class DialogueOrchestrator(Orchestrator):
    """Questioner and answerer alternate until ``rounds`` answers have been given."""

    @classmethod
    def from_row(cls, row: Mapping[str, Any], *, row_key: str, trial: int, config: Mapping[str, Any]):
        if not isinstance(row.get("topic"), str) or not row["topic"].strip():
            raise ValueError("row has no 'topic' string")
        return cls(
            task_id=task_id_for(row_key, trial),
            row_key=row_key,
            trial=trial,
            payload={"topic": row["topic"]},
            state={"rounds": int(config.get("rounds", 2)), "answers": 0},
        )

    def next_role(self) -> str | None:
        if self.state["answers"] >= self.state["rounds"]:
            return None
        last = self.history[-1].agent if self.history else None
        return ANSWERER if last == QUESTIONER else QUESTIONER


class _Speaker(Agent):
    """Sees its own turns as ``assistant`` and the other role's as ``user``."""

    uses_llm = True

    def opening(self, topic: str) -> str:
        return f"Topic: {topic}"

    async def step(self, orch: Orchestrator) -> None:
        role = self.context.role
        messages = [{"role": "system", "content": self.config.get("system_prompt", "")}]
        payload = await orch.get_payload()
        messages.append({"role": "user", "content": self.opening(payload["topic"])})
        for turn in await orch.conversation():
            messages.append({"role": "assistant" if turn.agent == role else "user", "content": turn.content or ""})
        if messages[-1]["role"] == "assistant":  # chat templates expect a user turn last
            messages.append({"role": "user", "content": "Continue."})
        result = await self.llm.chat(
            messages,
            max_tokens=int(self.config.get("max_tokens", 96)),
            temperature=float(self.config.get("temperature", 0.7)),
            sticky_key=orch.task_id,
        )
        text = (result.content or "").strip()
        if not text:
            raise ValueError(f"{role} produced an empty reply")
        turn = result.to_turn(agent=role)
        turn.content = text
        orch.add_turn(turn)
        self.after(orch)

    def after(self, orch: Orchestrator) -> None:
        pass


class Questioner(_Speaker):
    def opening(self, topic: str) -> str:
        return f"The topic is: {topic}. Ask your question."


class Answerer(_Speaker):
    def opening(self, topic: str) -> str:
        return f"We are discussing: {topic}."

    def after(self, orch: Orchestrator) -> None:
        orch.state["answers"] += 1


@hookimpl
def register_workflows(register):
    register(WorkflowSpec("dialogue", DialogueOrchestrator, "a questioner and an answerer discuss seed topics"))


@hookimpl
def register_agents(register):
    register(AgentSpec("dialogue.questioner", Questioner, "asks a question or a follow-up"))
    register(AgentSpec("dialogue.answerer", Answerer, "answers the last question"))


@hookimpl
def register_config_dirs(register):
    register(ConfigDirSpec("dialogue", Path(__file__).parent / "conf", "dialogue.yaml"))
