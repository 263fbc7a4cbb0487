"""The typed messages the driver, the agent hosts and the sink exchange (small and picklable)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ..protocol import Orchestrator


class Delivery(NamedTuple):
    """One task for one replica: what ``AgentHost.deliver`` receives, in batches."""

    role: str
    replica: int
    orch: Orchestrator


class LoadReport(NamedTuple):
    """A host's answer to a delivery: its replicas' loads (role -> replica index -> load)."""

    host: int
    loads: dict[str, dict[int, int]]


class Completion(NamedTuple):
    """A task the sink wrote: the driver counts it and frees its concurrency credit."""

    task_id: str
    status: str
    steps: int = 0
    tokens: int = 0


class ReplicaSlot(NamedTuple):
    """Where a replica lives and how many steps it runs at once."""

    host: int
    index: int
    capacity: int


@dataclass(frozen=True)
class Directory:
    """How every actor of a run finds the others: Ray actor names and the replica table."""

    sink: str
    hosts: list[str]
    replicas: dict[str, list[ReplicaSlot]]
    run_id: str = ""  # a label of the run's metrics
