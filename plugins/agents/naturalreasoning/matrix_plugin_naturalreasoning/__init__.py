"""NaturalReasoning curation for Matrix: web passages in, reasoning questions out.

``matrix run naturalreasoning``: a ``filter`` (heuristics, no LLM), a ``scorer`` (LLM, JSON
rubric) and a ``generator`` (LLM: question, reference answer, reasoning steps) over a
corpus streamed from shards (``dataset.loader=corpus``), with funnel statistics in the run
summary.
"""
from __future__ import annotations

from pathlib import Path

from matrix_core import AgentSpec, ConfigDirSpec, DatasetLoaderSpec, WorkflowSpec, hookimpl

from .corpus import Corpus, load_corpus, shard_files
from .heuristics import FilterResult, judge, signals
from .workflow import QUESTION_SCHEMA, SCORE_SCHEMA, STAGES, Filter, Generator, NRMetrics, NROrchestrator, Scorer

__all__ = [
    "Corpus", "Filter", "FilterResult", "Generator", "NRMetrics", "NROrchestrator", "QUESTION_SCHEMA",
    "SCORE_SCHEMA", "STAGES", "Scorer", "judge", "load_corpus", "shard_files", "signals",
]


@hookimpl
def register_workflows(register):
    register(WorkflowSpec("naturalreasoning", NROrchestrator, "filter, score and turn web passages into reasoning questions", metrics=NRMetrics))


@hookimpl
def register_agents(register):
    register(AgentSpec("naturalreasoning.filter", Filter, "language and reasoning-likelihood heuristics (no LLM)"))
    register(AgentSpec("naturalreasoning.scorer", Scorer, "LLM rubric scores as JSON; keeps passages above a threshold"))
    register(AgentSpec("naturalreasoning.generator", Generator, "LLM: question, reference answer and reasoning steps as JSON"))


@hookimpl
def register_dataset_loaders(register):
    register(DatasetLoaderSpec("corpus", load_corpus, "a file or directory of .jsonl/.jsonl.zst/.parquet shards, streamed, several at once"))


@hookimpl
def register_config_dirs(register):
    register(ConfigDirSpec("naturalreasoning", Path(__file__).parent / "conf", "naturalreasoning.yaml"))
