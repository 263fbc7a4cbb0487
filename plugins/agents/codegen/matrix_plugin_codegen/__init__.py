"""Verified code data for Matrix: an LLM writes functions, a sandbox runs their tests.

``matrix run codegen``: for each generated problem the ``coder`` writes the function, the
``executor`` runs the known tests in the task's sandbox (``runtime=sandbox``) and sends
failures back, up to ``max_attempts`` times. Records hold every attempt and the outcome.
"""
from __future__ import annotations

from pathlib import Path

from matrix_core import AgentSpec, ConfigDirSpec, WorkflowSpec, hookimpl

from .workflow import CodegenMetrics, CodegenOptions, CodegenOrchestrator, Coder, Executor, extract_code, problem_from_row

__all__ = ["CodegenMetrics", "CodegenOrchestrator", "Coder", "Executor", "extract_code", "problem_from_row"]


@hookimpl
def register_workflows(register):
    register(WorkflowSpec("codegen", CodegenOrchestrator, "an LLM writes functions; sandboxed tests verify them, failures go back", metrics=CodegenMetrics, options=CodegenOptions))


@hookimpl
def register_agents(register):
    register(AgentSpec("codegen.coder", Coder, "writes (and fixes) a Python function with the LLM"))
    register(AgentSpec("codegen.executor", Executor, "runs the known tests in the task's sandbox"))


@hookimpl
def register_config_dirs(register):
    register(ConfigDirSpec("codegen", Path(__file__).parent / "conf", "codegen.yaml"))
