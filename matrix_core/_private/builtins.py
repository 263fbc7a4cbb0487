"""The defaults that make ``matrix run`` work, registered like any other plugin."""
from __future__ import annotations

from pathlib import Path

from ..hookspecs import hookimpl
from ..specs import CommandSpec, ConfigDirSpec, DatasetLoaderSpec, LLMBackendSpec
from . import datasets, services


@hookimpl
def register_dataset_loaders(register):
    register(DatasetLoaderSpec("jsonl", datasets.load_jsonl, "one JSON object per line (dataset.path)"))
    register(DatasetLoaderSpec("csv", datasets.load_csv, "CSV with a header row (dataset.path)"))
    register(DatasetLoaderSpec("range", datasets.load_range, "dataset.size synthetic rows {id, n}"))


@hookimpl
def register_llm_backends(register):
    register(LLMBackendSpec("fake", services.start_fake, "in-process echo LLM for tests and dry runs"))
    register(LLMBackendSpec("endpoint", services.start_endpoint, "attach to running OpenAI-compatible servers by URL"))
    register(LLMBackendSpec("service", services.start_service, "attach to a service from `matrix services start` (llm.name)"))


@hookimpl
def register_config_dirs(register):
    register(ConfigDirSpec("matrix-core", Path(__file__).resolve().parent.parent / "conf", "base run config"))


@hookimpl
def register_commands(register):
    from ..cli import new_command, plugins_command, run_command
    from . import observe_cli
    from .services_cli import services_group

    register(CommandSpec("run", run_command, "run a workflow"))
    register(CommandSpec("plugins", plugins_command, "list installed plugins"))
    register(CommandSpec("new", new_command, "create a plugin from a template"))
    register(CommandSpec("services", services_group, "long-lived LLM services shared by runs"))
    register(CommandSpec("metrics", observe_cli.metrics_group, "Grafana dashboard and Prometheus config for Ray's metrics"))
    register(CommandSpec("report", observe_cli.report_command, "an HTML report with plots of a run's output"))
