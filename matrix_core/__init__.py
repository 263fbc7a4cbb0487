"""Matrix core: the public API. Internals live under ``matrix_core._private``."""
from .agent import Agent, AgentContext
from .errors import ConfigError, MatrixError
from .hookspecs import hookimpl
from .llm import Endpoint, LLMClient, LLMError, LLMResult, ServiceHandle, to_openai_messages
from ._private.llm_cache import LLMCache
from .options import (
    AgentOptions,
    CacheOptions,
    DatasetOptions,
    DeploymentOptions,
    LLMClientOptions,
    LLMOptions,
    OutputOptions,
    ResumeOptions,
    RoleOptions,
    RunOptions,
    SamplingOptions,
    SinkOptions,
)
from .plugins import PluginHost, get_plugin_host
from .sandbox import ExecResult, RuntimeClient, Sandbox, ToolRuntime
from .protocol import Choice, ErrorInfo, Hop, Offloaded, Orchestrator, Status, TaskState, ToolCall, Turn, Usage, task_id_for
from .sink import Sink
from .specs import (
    AgentSpec,
    CommandSpec,
    ConfigDirSpec,
    DatasetLoaderSpec,
    LLMBackendSpec,
    RunMetrics,
    SinkSpec,
    ToolRuntimeSpec,
    WorkflowSpec,
)

__all__ = [
    "AgentOptions", "CacheOptions", "DatasetOptions", "DeploymentOptions", "LLMClientOptions", "LLMOptions", "OutputOptions", "ResumeOptions",
    "RoleOptions", "RunOptions", "SamplingOptions", "SinkOptions",
    "Agent", "AgentContext", "AgentSpec", "Choice", "CommandSpec", "ConfigDirSpec", "ConfigError",
    "DatasetLoaderSpec", "Endpoint", "ErrorInfo", "ExecResult", "Hop", "LLMBackendSpec", "LLMCache", "LLMClient",
    "LLMError", "LLMResult", "MatrixError", "Offloaded", "Orchestrator", "PluginHost", "RunMetrics",
    "RuntimeClient", "Sandbox", "ServiceHandle", "Sink", "SinkSpec", "Status", "TaskState", "ToolCall", "ToolRuntime", "ToolRuntimeSpec", "Turn",
    "Usage", "WorkflowSpec", "get_plugin_host", "hookimpl", "report_figure", "run", "task_id_for",
    "to_openai_messages",
]


def report_figure(title: str, width: float = 6.4, height: float = 3.6):
    """A matplotlib ``(figure, axes)`` for :meth:`RunMetrics.plots` (``matrix report``)."""
    from ._private.report import figure

    return figure(title, width, height)


def run(workflow: str, overrides: list[str] | tuple[str, ...] = (), **kwargs):
    """Run a workflow from Python, as ``matrix run WORKFLOW OVERRIDES...`` would."""
    from ._private.driver import execute
    from .config import compose

    host = get_plugin_host()
    return execute(compose(workflow, list(overrides)), host, **kwargs)
