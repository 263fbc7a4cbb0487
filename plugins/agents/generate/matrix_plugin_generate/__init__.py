"""Prompts over any dataset: ``matrix run generate dataset.path=X.jsonl text_key=question``.

One or more generation steps (``steps: [draft, critique, rewrite]``), each a role of agent
type ``generate.step`` with its own prompt (a column, a chat column or a sandboxed Jinja
template over the row and earlier outputs), system prompt, sampling params, ``n``, JSON
schema and per-row overrides. The output is the input dataset with one column per step.
"""
from __future__ import annotations

from pathlib import Path

from matrix_core import AgentSpec, ConfigDirSpec, DatasetLoaderSpec, WorkflowSpec, hookimpl

from .loaders import load_hf_disk, load_parquet
from .templates import RenderError, Template
from .workflow import GenerateMetrics, GenerateStep, GenerateTask, Step, StepInputError, check_run

__all__ = ["GenerateMetrics", "GenerateStep", "GenerateTask", "RenderError", "Step", "StepInputError", "Template", "check_run", "load_hf_disk", "load_parquet"]


@hookimpl
def register_workflows(register):
    register(WorkflowSpec("generate", GenerateTask, "prompts over any dataset: templated, chained steps; every output kept", metrics=GenerateMetrics))


@hookimpl
def register_agents(register):
    register(AgentSpec("generate.step", GenerateStep, "one generation step: prompt from a column, chat column or template; n, JSON schema"))


@hookimpl
def register_dataset_loaders(register):
    register(DatasetLoaderSpec("parquet", load_parquet, "a .parquet file or directory of them, streamed by batches (dataset.path)"))
    register(DatasetLoaderSpec("hf_disk", load_hf_disk, "a Hugging Face datasets save_to_disk directory (dataset.path, dataset.split)"))


@hookimpl
def register_config_dirs(register):
    register(ConfigDirSpec("generate", Path(__file__).parent / "conf", "generate.yaml"))
