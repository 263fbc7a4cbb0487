"""A relay workflow with no LLM: each role stamps the task and passes it on.

Roles are visited in config order, ``laps`` times. It exercises routing, backpressure and
the sink without any I/O, so its hops/s is the runtime's own ceiling.
"""
from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel, Field

from matrix_core import Agent, AgentOptions, AgentSpec, ConfigDirSpec, Orchestrator, WorkflowSpec, hookimpl


class RelayOptions(BaseModel):
    laps: int = Field(1, ge=1, le=10_000, description="times each task visits every role")


class RelayOrchestrator(Orchestrator):
    record_hops = False  # keep messages small: this workflow measures the runtime

    @classmethod
    def map_row(cls, row: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
        roles = list(config["agents"])
        return {"payload": dict(row), "state": {"route": roles * int(config.get("laps", 1)), "visits": []}}

    def next_role(self) -> str | None:
        route, visits = self.state["route"], self.state["visits"]
        return route[len(visits)] if len(visits) < len(route) else None


class Stamp(Agent):
    """Records (role, host pid); optionally sleeps to stand in for I/O and adds a turn of
    ``turn_bytes`` to grow the history."""

    class Options(AgentOptions):
        sleep_ms: float = Field(0, ge=0, description="sleep per step, standing in for I/O")
        fail_every: int | None = Field(None, ge=1, description="fail the tasks whose row key is a multiple of this")
        turn_bytes: int = Field(0, ge=0, description="add a turn of this many bytes per step (grows the history)")

    async def step(self, orch: Orchestrator) -> None:
        if self.options.sleep_ms:
            await asyncio.sleep(self.options.sleep_ms / 1000)
        if self.options.fail_every and int(orch.row_key) % self.options.fail_every == 0:
            raise RuntimeError(f"injected failure in role {self.context.role}")
        orch.state["visits"].append([self.context.role, os.getpid()])
        turn_bytes = self.options.turn_bytes
        if turn_bytes:  # a growing conversation: offloading moves it between hops
            orch.state.setdefault("segments_seen", []).append(len(orch.history_segments))
            label = f"{self.context.role}{len(orch.state['visits'])}:"
            orch.add_turn(role="assistant", agent=self.context.role, content=label.ljust(turn_bytes, "x"))


@hookimpl
def register_workflows(register):
    register(WorkflowSpec("relay", RelayOrchestrator, "no-LLM relay through every role (runtime overhead)", options=RelayOptions))


@hookimpl
def register_agents(register):
    register(AgentSpec("relay.stamp", Stamp, "stamps the task and passes it on"))


@hookimpl
def register_config_dirs(register):
    register(ConfigDirSpec("relay", Path(__file__).parent / "conf", "relay.yaml"))
