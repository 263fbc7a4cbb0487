"""Collaborative Reasoner (Coral) for Matrix: two agents discuss a question until they agree.

The first case study of the Matrix paper (arXiv 2511.21686): ``alice`` answers, ``bob``
agrees or challenges, and so on; an ``extractor`` reads each reply's answer; the dialogue
ends on agreement or after ``max_turns``. Records hold every answer, the agreement, the
final answer and whether it matches the gold one.
"""
from __future__ import annotations

from pathlib import Path

from matrix_core import AgentSpec, ConfigDirSpec, DatasetLoaderSpec, WorkflowSpec, hookimpl

from .answers import extract_answer, normalize, same_answer
from .hf import load_hf
from .workflow import CoralMetrics, CoralOptions, CoralOrchestrator, Extractor, Reasoner, question_from_row

__all__ = [
    "CoralMetrics", "CoralOrchestrator", "Extractor", "Reasoner", "extract_answer", "load_hf",
    "normalize", "question_from_row", "same_answer",
]


@hookimpl
def register_workflows(register):
    register(WorkflowSpec("coral", CoralOrchestrator, "two agents discuss each question until their answers agree", metrics=CoralMetrics, options=CoralOptions))


@hookimpl
def register_agents(register):
    register(AgentSpec("coral.reasoner", Reasoner, "answers, or agrees with / challenges the partner"))
    register(AgentSpec("coral.extractor", Extractor, "reads the final answer out of a reply (parser or LLM)"))


@hookimpl
def register_dataset_loaders(register):
    register(DatasetLoaderSpec("hf", load_hf, "a Hugging Face dataset by name (dataset.name, split; needs `datasets`)"))


@hookimpl
def register_config_dirs(register):
    register(ConfigDirSpec("coral", Path(__file__).parent / "conf", "coral.yaml"))
