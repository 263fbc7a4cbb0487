"""What the driver sends to every actor: the resolved, picklable shape of a run."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any



@dataclass
class RoleSpec:
    name: str
    agent_cls: type
    replicas: int
    max_in_flight: int
    options: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    llm: str | None = None  # the LLM resource this role calls (None: the run's llm)


@dataclass
class RunPlan:
    workflow: str
    orchestrator_cls: type
    roles: dict[str, RoleSpec]
    hosts: int
    offload_threshold_bytes: int
    max_steps: int
    task_timeout_s: float | None
    colocate: bool = True
    checkpoint_every: int = 0
    batch_max: int = 256
    outstanding_per_peer: int = 2
    run_config: dict[str, Any] = field(default_factory=dict)
    llm_resources: Any = None  # resources.LLMResources: started resources and which role calls which

    def placement(self) -> list[list[tuple[str, int]]]:
        """Host index -> [(role, replica index)].

        Co-located (default): replicas of all roles share ``hosts`` actors, so most hops stay
        in one process. Roles with resources, and every role when ``colocate`` is off, get
        one actor per replica.
        """
        shared: list[list[tuple[str, int]]] = [[] for _ in range(self.hosts)]
        dedicated: list[list[tuple[str, int]]] = []
        for role in self.roles.values():
            for r in range(role.replicas):
                if role.resources or not self.colocate:
                    dedicated.append([(role.name, r)])
                else:
                    shared[r % self.hosts].append((role.name, r))
        return [h for h in shared if h] + dedicated

    def host_resources(self, placement: list[tuple[str, int]]) -> dict[str, Any]:
        roles = {self.roles[name].name for name, _ in placement}
        if len(roles) == 1:
            return dict(self.roles[roles.pop()].resources)
        return {}
