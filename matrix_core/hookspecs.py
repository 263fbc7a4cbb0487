"""The hooks a Matrix plugin implements. Every hook is a registration callback.

A plugin is a module listed under the ``matrix`` entry-point group::

    [project.entry-points.matrix]
    myplugin = "matrix_plugin_myplugin"

It implements any of these hooks with :data:`matrix_core.hookimpl` and calls ``register``
once per thing it provides. Implementations may omit arguments they do not use.
"""
from __future__ import annotations

from typing import Callable

import pluggy

from .specs import (
    AgentSpec,
    CommandSpec,
    ConfigDirSpec,
    DatasetLoaderSpec,
    LLMBackendSpec,
    SinkSpec,
    ToolRuntimeSpec,
    WorkflowSpec,
)

hookspec = pluggy.HookspecMarker("matrix")
hookimpl = pluggy.HookimplMarker("matrix")


@hookspec
def register_workflows(register: Callable[[WorkflowSpec], None]) -> None:
    """Register workflows that ``matrix run NAME`` can execute.

    Example::

        @hookimpl
        def register_workflows(register):
            register(WorkflowSpec(name="dialogue", orchestrator=DialogueOrchestrator))
    """


@hookspec
def register_agents(register: Callable[[AgentSpec], None]) -> None:
    """Register agent types that configs name in ``agents.<role>.type``.

    Example::

        @hookimpl
        def register_agents(register):
            register(AgentSpec(name="dialogue.answerer", cls=Answerer))
    """


@hookspec
def register_llm_backends(register: Callable[[LLMBackendSpec], None]) -> None:
    """Register LLM service backends selected with ``llm=NAME``.

    Example::

        @hookimpl
        def register_llm_backends(register):
            register(LLMBackendSpec(name="llamacpp", start=start_llamacpp))
    """


@hookspec
def register_tool_runtimes(register: Callable[[ToolRuntimeSpec], None]) -> None:
    """Register tool runtimes (code sandboxes, containers) selected with ``runtime=NAME``.

    Example::

        @hookimpl
        def register_tool_runtimes(register):
            register(ToolRuntimeSpec(name="bwrap", factory=BubblewrapRuntime))
    """


@hookspec
def register_sinks(register: Callable[[SinkSpec], None]) -> None:
    """Register output formats selected with ``sink=NAME``.

    Example::

        @hookimpl
        def register_sinks(register):
            register(SinkSpec(name="jsonl", cls=JsonlSink))
    """


@hookspec
def register_dataset_loaders(register: Callable[[DatasetLoaderSpec], None]) -> None:
    """Register dataset readers selected with ``dataset.loader=NAME``.

    Example::

        @hookimpl
        def register_dataset_loaders(register):
            register(DatasetLoaderSpec(name="jsonl", load=read_jsonl))
    """


@hookspec
def register_config_dirs(register: Callable[[ConfigDirSpec], None]) -> None:
    """Register Hydra config directories (workflow yamls, ``llm/``, ``sink/`` groups).

    Example::

        @hookimpl
        def register_config_dirs(register):
            register(ConfigDirSpec(name="dialogue", path=Path(__file__).parent / "conf"))
    """


@hookspec
def register_commands(register: Callable[[CommandSpec], None]) -> None:
    """Register ``matrix`` sub-commands (click commands or groups).

    Example::

        @hookimpl
        def register_commands(register):
            register(CommandSpec(name="services", command=services_group))
    """
