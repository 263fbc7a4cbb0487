"""The core sub-commands: run, plugins, new, services, cache, metrics, report."""

from __future__ import annotations

from ..hookspecs import hookimpl
from ..specs import CommandSpec


@hookimpl
def register_commands(register):
    # Imported here: the CLI imports the plugin host, which imports this module.
    from .._private import observe_cli
    from .._private.llm_cache import cache_command
    from .._private.services_cli import services_group
    from ..cli import new_command, plugins_command, run_command

    register(CommandSpec("run", run_command, "run a workflow"))
    register(CommandSpec("plugins", plugins_command, "list installed plugins"))
    register(CommandSpec("new", new_command, "create a plugin from a template"))
    register(CommandSpec("services", services_group, "long-lived LLM services shared by runs"))
    register(CommandSpec("cache", cache_command(), "the LLM response cache: info, clear"))
    register(CommandSpec("metrics", observe_cli.metrics_group, "Grafana dashboard and Prometheus config for Ray's metrics"))
    register(CommandSpec("report", observe_cli.report_command, "an HTML report with plots of a run's output"))
