"""The agent interface: one role's step, hosted in Ray async actors."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .options import AgentOptions, parse

if TYPE_CHECKING:
    from .llm import LLMClient
    from .protocol import Orchestrator
    from .sandbox import RuntimeClient


@dataclass
class AgentContext:
    """What the runtime gives an agent: its role, its config section, shared services."""

    role: str
    config: Mapping[str, Any]
    host: int = 0
    replica: int = 0
    llm: "LLMClient | None" = None
    llms: Mapping[str, "LLMClient"] = field(default_factory=dict)  # every LLM resource the role may reach, by name
    run_config: Mapping[str, Any] = field(default_factory=dict)
    runtime: "RuntimeClient | None" = None  # resolved on first use from run_config["runtime"]["service"]


class Agent:
    """Subclass and implement :meth:`step`; declare options as ``class Options(AgentOptions)``.

    An agent holds no per-task state: everything a task needs travels in the orchestrator.
    ``step`` updates the orchestrator in place (or returns a replacement); the runtime then
    asks ``orchestrator.next_role()`` where it goes next. Raising marks the task failed
    with the exception as its error; the run goes on.
    """

    #: Set True in agents that call ``self.llm``: the run then starts the role's LLM resource
    #: (``agents.<role>.llm``, the run's ``llm`` by default). May be a function of the role's
    #: options instead, for agents that call an LLM only in some modes.
    uses_llm: "bool | Callable[[Mapping[str, Any]], bool]" = False
    #: Set True in agents that use ``self.runtime``: the run then starts the configured tool runtime.
    uses_runtime: bool = False

    #: The agent's typed options: subclass as a nested ``class Options(AgentOptions)``.
    Options: type[AgentOptions] = AgentOptions

    def __init__(self, context: AgentContext):
        self.context = context
        self.config = context.config  # the role's section as given (the keys of ``Options`` too)
        self.options = parse(self.Options, context.config, f"agents.{context.role}")

    @property
    def llm(self) -> "LLMClient":
        if self.context.llm is None:
            from .errors import ConfigError

            raise ConfigError(f"role {self.context.role!r} needs an LLM but the run has none configured")
        return self.context.llm

    @property
    def llms(self) -> Mapping[str, "LLMClient"]:
        """The LLM resources this role may reach by name: its own and those in ``agents.<role>.llms``."""
        return self.context.llms

    def llm_for(self, name: str) -> "LLMClient":
        """``self.llms[name]``, or one line naming the role and the resources it can reach."""
        if name not in self.context.llms:
            from .errors import ConfigError

            raise ConfigError(
                f"role {self.context.role!r} has no LLM resource {name!r}; it reaches: {', '.join(self.context.llms) or 'none'} "
                f"(list it in agents.{self.context.role}.llms)"
            )
        return self.context.llms[name]

    @property
    def runtime(self) -> "RuntimeClient":
        """The run's tool runtime (``runtime=NAME``): ``await self.runtime.acquire(orch.task_id)``."""
        if self.context.runtime is None:
            from .sandbox import runtime_client

            self.context.runtime = runtime_client(self.context.run_config)
        return self.context.runtime

    async def setup(self) -> None:
        """Called once per replica before the first step."""

    async def step(self, orchestrator: "Orchestrator") -> "Orchestrator | None":
        raise NotImplementedError

    async def close(self) -> None:
        """Called once per replica at the end of the run."""
