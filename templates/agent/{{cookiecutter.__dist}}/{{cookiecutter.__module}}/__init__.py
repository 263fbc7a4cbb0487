"""{{ cookiecutter.description }}

``matrix run {{ cookiecutter.name }}`` sends every dataset row through two roles: the ``writer``
answers the row's prompt with the LLM, the ``scorer`` grades the answer in plain Python and
sends it back for another draft when it misses the length bounds.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from pydantic import Field

from matrix_core import Agent, AgentOptions, AgentSpec, ConfigDirSpec, Orchestrator, SamplingOptions, WorkflowSpec, hookimpl

NAME = "{{ cookiecutter.name }}"
WRITER, SCORER = "writer", "scorer"


class Task(Orchestrator):
    """One row's task. Routing lives here, so agents never need to know about each other."""

    @classmethod
    def map_row(cls, row: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
        """The task's fields for one row; ``from_row`` adds the task id, row key and trial."""
        prompt = row.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("row has no 'prompt' string")  # the run records the row as failed
        return {
            "payload": {"prompt": prompt},
            "state": {"drafts": 0, "graded": 0, "passed": False, "max_drafts": int(config.get("max_drafts", 2))},
        }

    def next_role(self) -> str | None:
        s = self.state
        if s["graded"] < s["drafts"]:
            return SCORER
        if s["drafts"] == 0 or (not s["passed"] and s["drafts"] < s["max_drafts"]):
            return WRITER
        return None


class Writer(Agent):
    """Drafts an answer; on a second draft it also sees its first one and the scorer's feedback.

    ``self.llm`` is the LLM resource of the writer's role (``agents.writer.llm``, the run's ``llm``
    by default); ``redraft_llm: NAME`` sends second drafts to another resource, reached by name.
    """

    uses_llm = True

    class Options(SamplingOptions):
        """``agents.writer.*``: typed, validated before the run starts, listed by ``--help``."""

        system_prompt: str = Field("", description="the writer's system message")
        max_tokens: int | None = Field(128, ge=1, description="longest draft, in tokens")
        temperature: float | None = Field(0.5, ge=0, description="sampling temperature")
        redraft_llm: str | None = Field(None, description="LLM resource for second drafts (null: the role's own)")

    async def step(self, orch: Task) -> None:
        role = self.context.role
        payload = await orch.get_payload()
        messages = [
            {"role": "system", "content": self.options.system_prompt},
            {"role": "user", "content": payload["prompt"]},
        ]
        if orch.state["drafts"]:
            # conversation(), not history: older turns may have moved to the object store.
            previous = (await orch.conversation())[-1]
            messages += [
                {"role": "assistant", "content": previous.content or ""},
                {"role": "user", "content": orch.state["feedback"]},
            ]
        redraft_llm = self.options.redraft_llm
        llm = self.llm_for(redraft_llm) if redraft_llm and orch.state["drafts"] else self.llm
        # sticky_key: the same endpoint per task, for better prompt-cache reuse.
        result = await llm.chat(messages, sticky_key=orch.task_id, **self.options.sampling())
        if not (result.content or "").strip():
            raise ValueError("the writer produced an empty reply")
        orch.add_turn(result.to_turn(agent=role))
        orch.state["drafts"] += 1


class Scorer(Agent):
    """Grades the last draft by its word count; no LLM, so the run starts none for it."""

    class Options(AgentOptions):
        min_words: int = Field(5, ge=0, description="a shorter draft fails")
        max_words: int = Field(80, ge=1, description="a longer draft fails")

    async def step(self, orch: Task) -> None:
        lo, hi = self.options.min_words, self.options.max_words
        words = len(((await orch.conversation())[-1].content or "").split())
        passed = lo <= words <= hi
        orch.state.update(
            graded=orch.state["drafts"],
            words=words,
            score=round(min(words, hi) / max(words, lo, 1), 3),  # 1.0 inside the bounds
            passed=passed,
            feedback=None if passed else f"That was {words} words. Rewrite it in {lo} to {hi} words.",
        )


@hookimpl
def register_workflows(register):
    register(WorkflowSpec(NAME, Task, "writer drafts an answer, scorer grades its length"))


@hookimpl
def register_agents(register):
    register(AgentSpec(f"{NAME}.writer", Writer, "answers the row's prompt with the LLM"))
    register(AgentSpec(f"{NAME}.scorer", Scorer, "grades the last draft's length (pure Python)"))


@hookimpl
def register_config_dirs(register):
    register(ConfigDirSpec(NAME, Path(__file__).parent / "conf", f"{NAME}.yaml"))
