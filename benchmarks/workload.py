"""The benchmark workloads, registered as a Matrix plugin at run time (``register()``).

``bench_chat``: a multi-turn conversation per task against one LLM. Turn counts and reply
lengths are heavy-tailed (lognormal) and derived from the task id and a seed, so Matrix and
every baseline replay exactly the same calls: the same prompts and the same ``max_tokens``
(the simulator is set to always fill ``max_tokens``).

``bench_ballast``: a task that carries ``ballast_bytes`` of history through ``laps`` hops
between two roles: the cost of moving a growing conversation.
"""
from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Any, Mapping

from matrix_core import Agent, AgentSpec, ConfigDirSpec, Endpoint, LLMBackendSpec, Orchestrator, ServiceHandle, Turn, WorkflowSpec, get_plugin_host, hookimpl, task_id_for

CONF_DIR = Path(__file__).parent / "conf"
PROMPT = "Let us work through a long problem together, one step at a time."
FOLLOW_UP = "Go on."
DEFAULT_SHAPE = {"seed": 0, "turns_mean": 5.0, "turns_sigma": 1.0, "max_turns": 30, "tokens_mean": 64.0, "tokens_sigma": 0.8, "max_tokens": 1024}


def _lognormal(rng: random.Random, mean: float, sigma: float) -> float:
    return rng.lognormvariate(math.log(mean) - sigma * sigma / 2, sigma)  # mean is the mean, not the median


def task_plan(index: int, shape: Mapping[str, Any] | None = None) -> list[int]:
    """``max_tokens`` of each turn of task ``index``: as many entries as the task has turns."""
    s = {**DEFAULT_SHAPE, **(shape or {})}
    rng = random.Random(f"bench:{s['seed']}:{index}")
    turns = min(int(s["max_turns"]), max(1, round(_lognormal(rng, s["turns_mean"], s["turns_sigma"]))))
    return [min(int(s["max_tokens"]), max(1, round(_lognormal(rng, s["tokens_mean"], s["tokens_sigma"])))) for _ in range(turns)]


def messages_for(replies: list[str]) -> list[dict[str, str]]:
    """The chat sent at the next turn: the opening prompt, then every reply and a follow-up."""
    messages = [{"role": "user", "content": PROMPT}]
    for reply in replies:
        messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": FOLLOW_UP}]
    return messages


class ChatOrchestrator(Orchestrator):
    record_hops = False  # timings go to state: t0 (first call sent), t1 (last reply in)

    @classmethod
    def from_row(cls, row: Mapping[str, Any], *, row_key: str, trial: int, config: Mapping[str, Any]):
        plan = task_plan(int(row["id"]), config.get("shape"))
        return cls(task_id=task_id_for(row_key, trial), row_key=row_key, trial=trial, state={"plan": plan, "tokens": 0})

    def next_role(self) -> str | None:
        return "chat" if len(self.history) < len(self.state["plan"]) else None


class ChatAgent(Agent):
    uses_llm = True

    async def step(self, orch: Orchestrator) -> None:
        replies = [t.content or "" for t in await orch.conversation()]
        orch.state.setdefault("t0", time.time())
        result = await self.llm.chat(messages_for(replies), max_tokens=orch.state["plan"][len(replies)])
        orch.add_turn(Turn(role="assistant", content=result.content))
        orch.state["tokens"] += result.usage.completion_tokens
        orch.state["t1"] = time.time()


class BallastOrchestrator(Orchestrator):
    record_hops = False

    @classmethod
    def from_row(cls, row: Mapping[str, Any], *, row_key: str, trial: int, config: Mapping[str, Any]):
        size = int(config["ballast_bytes"])
        # Bytes of ballast, not characters of a str: distinct per task so nothing is shared.
        history = [Turn(role="user", content=f"{row_key}:" + "x" * max(0, size - 64 - len(row_key) - 1))]
        return cls(task_id=task_id_for(row_key, trial), row_key=row_key, trial=trial, history=history, state={"left": int(config["laps"])})

    def next_role(self) -> str | None:
        return ("ping", "pong")[self.state["left"] % 2] if self.state["left"] > 0 else None


class Bounce(Agent):
    async def step(self, orch: Orchestrator) -> None:
        # Reads the history as an LLM agent would for its prompt: an offloaded one is fetched.
        orch.state["turns_read"] = len(await orch.conversation())
        orch.state["left"] -= 1


@hookimpl
def register_workflows(register):
    register(WorkflowSpec("bench_chat", ChatOrchestrator, "benchmark: heavy-tailed multi-turn chats against one LLM"))
    register(WorkflowSpec("bench_ballast", BallastOrchestrator, "benchmark: a task carrying N bytes of history between two roles"))


@hookimpl
def register_agents(register):
    register(AgentSpec("bench.chat", ChatAgent, "one LLM call per turn, the whole conversation as the prompt"))
    register(AgentSpec("bench.bounce", Bounce, "counts a hop and passes the task on"))


def _start_in_process_sim(cfg: Mapping[str, Any]) -> ServiceHandle:
    return ServiceHandle(endpoints=[Endpoint(base_url="sim://llm/v1", model="simllm", transport="benchmarks._simtransport:transport")])


def _start_coral_dummy(cfg: Mapping[str, Any]) -> ServiceHandle:
    return ServiceHandle(endpoints=[Endpoint(base_url="coral://llm/v1", model="coral-dummy", transport="benchmarks._coralfake:transport")])


@hookimpl
def register_llm_backends(register):
    register(LLMBackendSpec("bench_sim", _start_in_process_sim, "benchmark: the simllm engine inside each agent host, no sockets"))
    register(LLMBackendSpec("bench_coral", _start_coral_dummy, "benchmark: upstream's dummy Coral agents as a fake LLM, no sockets"))


@hookimpl
def register_config_dirs(register):
    register(ConfigDirSpec("benchmarks", CONF_DIR, "bench_chat.yaml"))


def register() -> None:
    """Add these workflows to the process's plugin host (once)."""
    import sys

    host = get_plugin_host()
    if "benchmarks" not in host.plugin_names():
        host.register(sys.modules[__name__], "benchmarks", "benchmarks")
