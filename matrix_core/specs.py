"""Typed specs that plugins register through the hooks in :mod:`matrix_core.hookspecs`.

Each spec is a frozen dataclass with a unique ``name`` within its kind; the plugin host
records which plugin registered it, so a duplicate is reported with both packages.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

from .llm import Endpoint, ServiceHandle  # noqa: F401 - defined next to the client; importable here too

if TYPE_CHECKING:
    import click
    from pydantic import BaseModel

    from .agent import Agent
    from .options import DeploymentOptions
    from .protocol import Orchestrator
    from .sink import Sink


@dataclass(frozen=True)
class WorkflowSpec:
    """A runnable workflow: ``matrix run NAME`` composes the config ``NAME.yaml``.

    ``orchestrator`` is the class that carries the task and decides which role acts next.
    ``config_name`` defaults to ``name``; the yaml lives in a registered config directory.
    ``metrics``, if given, is called with the run config and returns a :class:`RunMetrics`
    that sees every record the run writes; its ``result()`` is part of the run summary.
    ``defaults``, if given, is the workflow's config itself (what its yaml would hold, e.g.
    ``{"agents": {...}, "defaults": [{"llm": "fake"}]}``), so no yaml file is needed;
    ``matrix_base`` comes first and ``workflow`` is set unless they are given.
    ``options``, if given, is a pydantic model of the workflow's own top-level keys (dialogue's
    ``rounds``): they are checked when the run starts, so a typo is one line, not a failed row each.
    """

    name: str
    orchestrator: type["Orchestrator"]
    description: str = ""
    config_name: str | None = None
    metrics: Callable[[Mapping[str, Any]], "RunMetrics"] | None = None
    defaults: Mapping[str, Any] | None = None
    options: type[BaseModel] | None = None


class RunMetrics:
    """Aggregates a workflow's own statistics (accuracy, funnel counts) as records are written."""

    def add(self, record: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def result(self) -> dict[str, Any]:
        raise NotImplementedError

    def plots(self) -> list[tuple[str, Any]]:
        """``(title, matplotlib Figure)`` pairs for the workflow's section of ``matrix report``,
        drawn from what ``add`` saw (its ``result()`` is shown as a table above them)."""
        return []


@dataclass(frozen=True)
class AgentSpec:
    """An agent type that workflow configs refer to as ``agents.<role>.type: NAME``."""

    name: str
    cls: type["Agent"]
    description: str = ""


@dataclass(frozen=True)
class LLMBackendSpec:
    """An LLM service backend selected with ``llm=NAME``.

    ``start(cfg)`` receives the ``llm`` config section as a plain dict (Ray is initialised)
    and returns a :class:`ServiceHandle`. It raises :class:`matrix_core.MatrixError` with
    one readable line when the service cannot start.

    ``serve_app(cfg, options)``, if given, makes the backend a Ray Serve deployment: it
    returns the ``ray.serve.Application`` to deploy (built, not yet run) from the ``llm``
    section and the :class:`~matrix_core.options.DeploymentOptions` (replicas, autoscaling,
    resources, health checks). The core deploys it, for ``matrix services start`` (long-lived)
    and for a run (removed at its end); ``start`` may then be left out, or only attach by
    URL. The full contract is in :mod:`matrix_core.deployments`.
    """

    name: str
    start: Callable[[Mapping[str, Any]], ServiceHandle] | None = None
    description: str = ""
    serve_app: Callable[[Mapping[str, Any], "DeploymentOptions"], Any] | None = None


@dataclass(frozen=True)
class ToolRuntimeSpec:
    """A tool runtime (sandbox, container) selected with ``runtime=NAME``.

    ``factory(cfg)`` receives the ``runtime`` config section as a plain dict and returns a
    :class:`matrix_core.sandbox.ToolRuntime`. It is called inside the run's runtime service
    actor, so it must be importable by reference (a class or module-level function); the
    ``runtime/NAME.yaml`` config of the plugin holds its defaults.
    """

    name: str
    factory: Callable[[Mapping[str, Any]], Any]
    description: str = ""


@dataclass(frozen=True)
class SinkSpec:
    """An output format selected with ``sink=NAME``; ``cls`` implements :class:`Sink`."""

    name: str
    cls: type["Sink"]
    description: str = ""


@dataclass(frozen=True)
class DatasetLoaderSpec:
    """Reads a dataset. ``load(cfg)`` yields ``(row_number, row_dict_or_exception)``.

    A row that cannot be parsed is yielded as an exception so the run reports it and goes on.
    """

    name: str
    load: Callable[[Mapping[str, Any]], Iterator[tuple[int, "dict[str, Any] | Exception"]]]
    description: str = ""


@dataclass(frozen=True)
class ConfigDirSpec:
    """A directory of Hydra configs (workflow yamls and config groups such as ``llm/``)."""

    name: str
    path: Path
    description: str = ""


@dataclass(frozen=True)
class CommandSpec:
    """A ``matrix`` sub-command: ``command`` is a click command or group."""

    name: str
    command: "click.Command"
    description: str = ""


def backend_defaults(conf_dir, name: str) -> dict[str, Any]:
    """An LLM backend's defaults: its ``llm/NAME.yaml`` without the ``client`` section.

    The yaml is the one place a backend's defaults live, so its ``start(cfg)`` can be called
    with a partial config (tests, ``matrix services``) and still see every key.
    """
    import yaml

    with open(Path(conf_dir) / "llm" / f"{name}.yaml") as f:
        cfg = yaml.safe_load(f)
    cfg.pop("client", None)
    return cfg


SPEC_KINDS: dict[str, type] = {
    "workflow": WorkflowSpec,
    "agent": AgentSpec,
    "llm_backend": LLMBackendSpec,
    "tool_runtime": ToolRuntimeSpec,
    "sink": SinkSpec,
    "dataset_loader": DatasetLoaderSpec,
    "config_dir": ConfigDirSpec,
    "command": CommandSpec,
}
