"""Tau2-Bench for Matrix: user simulator <-> assistant with domain tools, scored as tau2 scores them.

``matrix run tau2 domain=airline`` generates and scores customer-service trajectories for
the domains mock, airline, retail and telecom; ``matrix tau2 report OUT.jsonl`` summarizes
them. The scoring is a plain function (:func:`evaluate`), usable without Ray.
"""
from __future__ import annotations

from pathlib import Path

from matrix_core import AgentSpec, CommandSpec, ConfigDirSpec, DatasetLoaderSpec, WorkflowSpec, hookimpl

from .env import Domain, Environment, State, Toolkit, ToolError, get_domain
from .evaluation import evaluate, gold_trajectory, initial_environment, normalize_messages
from .report import summarize
from .tau2_format import read_results, records_to_results, score_results
from .versions import DEFAULT_VERSION, VERSIONS, Behaviour, behaviour_for
from .tasks import load_dataset, load_tasks
from .workflow import (
    Tau2Assistant, Tau2Environment, Tau2Evaluator, Tau2Metrics, Tau2Options, Tau2Orchestrator, Tau2User, pass_hat_k,
)

__all__ = [
    "DEFAULT_VERSION", "VERSIONS", "Behaviour", "behaviour_for", "read_results", "records_to_results", "score_results",
    "Domain", "Environment", "State", "Tau2Assistant", "Tau2Environment", "Tau2Evaluator", "Tau2Metrics", "Tau2Options",
    "Tau2Orchestrator", "Tau2User", "ToolError", "Toolkit", "evaluate", "get_domain", "gold_trajectory",
    "initial_environment", "load_dataset", "load_tasks", "normalize_messages", "pass_hat_k", "summarize",
]


@hookimpl
def register_workflows(register):
    register(WorkflowSpec("tau2", Tau2Orchestrator, "customer-service tool-use trajectories (Tau2-Bench), scored", metrics=Tau2Metrics,
                          options=Tau2Options))


@hookimpl
def register_agents(register):
    register(AgentSpec("tau2.assistant", Tau2Assistant, "customer-service agent: domain policy and tools"))
    register(AgentSpec("tau2.user", Tau2User, "user simulator: tau2 guidelines and the task's scenario"))
    register(AgentSpec("tau2.environment", Tau2Environment, "runs tool calls on the task's environment snapshot"))
    register(AgentSpec("tau2.evaluator", Tau2Evaluator, "tau2 reward: DB, env assertions, communicate, NL, actions"))


@hookimpl
def register_dataset_loaders(register):
    register(DatasetLoaderSpec("tau2", load_dataset, "tau2 tasks by dataset.domain, split, task_ids"))


@hookimpl
def register_config_dirs(register):
    register(ConfigDirSpec("tau2", Path(__file__).parent / "conf", "tau2.yaml"))


@hookimpl
def register_commands(register):
    from .report import tau2_group

    register(CommandSpec("tau2", tau2_group, "tau2 tools: `matrix tau2 report OUT.jsonl`, `score RESULTS.json`, `export OUT.jsonl -o RESULTS.json`"))
