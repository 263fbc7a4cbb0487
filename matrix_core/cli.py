"""The ``matrix`` command. Sub-commands are registered through the ``register_commands`` hook."""
from __future__ import annotations

import json
import logging
import sys
from typing import Sequence

import click

from .errors import ConfigError, MatrixError
from .plugins import PluginHost, get_plugin_host, set_plugin_host

log = logging.getLogger("matrix")


def _setup_logging() -> None:
    if not logging.getLogger("matrix").handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("matrix: %(levelname)s: %(message)s"))
        logging.getLogger("matrix").addHandler(handler)
        logging.getLogger("matrix").setLevel(logging.INFO)
        logging.getLogger("matrix").propagate = False


def fail(message: str, code: int = 2) -> None:
    click.echo(f"matrix: error: {message}", err=True)
    sys.exit(code)


def _usage_error(exc: click.UsageError) -> None:
    where = exc.ctx.command_path if exc.ctx is not None else "matrix"
    fail(f"{exc.format_message()} (see {where} --help)")


class MatrixGroup(click.Group):
    """Lists built-in and plugin commands lazily; turns MatrixError into one line."""

    def _commands(self) -> dict[str, click.Command]:
        return {name: entry.spec.command for name, entry in get_plugin_host().registry("command").items()}

    def list_commands(self, ctx: click.Context) -> list[str]:
        try:
            return sorted(self._commands())
        except MatrixError:
            return []

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return self._commands().get(name)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            _usage_error(exc)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:  # a sub-command's missing argument, bad option, unknown command
            _usage_error(exc)
        except MatrixError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            fail("interrupted; run the same command again to resume (finished tasks are kept)", code=130)


@click.group(cls=MatrixGroup)
@click.option("-p", "plugin_opts", multiple=True, metavar="no:NAME", help="Disable plugin NAME (repeatable).")
@click.version_option(package_name="matrix-core")
def main(plugin_opts: Sequence[str]) -> None:
    """Matrix: many cooperating agents generating synthetic data on Ray."""
    _setup_logging()
    blocked = []
    for opt in plugin_opts:
        if not opt.startswith("no:"):
            fail(f"-p expects no:NAME to disable a plugin, got {opt!r}")
        blocked.append(opt[3:])
    if blocked:
        set_plugin_host(PluginHost.from_env(block=blocked))


def _run_flags(args: list[str]) -> list[str]:
    out, it = [], iter(args)
    for arg in it:
        if arg == "--address":
            value = next(it, None)
            if value is None:
                fail("--address needs a value (a Ray cluster address)")
            out.append(f"run.address={value}")
        elif arg.startswith("--address="):
            out.append(f"run.address={arg.split('=', 1)[1]}")
        elif arg == "--cluster" or arg.startswith("--cluster="):
            name = arg.split("=", 1)[1] if "=" in arg else next(it, None)
            if not name:
                fail("--cluster needs a value (a name from `matrix cluster start`)")
            from ._private.clusters import join

            out.append(f"run.address={join(name)}")
        elif arg == "--force":
            out.append("run.force=true")
        else:
            out.append(arg)
    return out


@click.command(
    "run",
    add_help_option=False,
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.argument("workflow", required=False)
@click.argument("overrides", nargs=-1, type=click.UNPROCESSED)
def run_command(workflow: str | None, overrides: Sequence[str]) -> None:
    """Run WORKFLOW with Hydra OVERRIDES (key=value, group=option, +new=value).

    `matrix run WORKFLOW --help` shows the workflow's config groups; `--cfg job` prints the
    composed config; `--address ADDR` (or RAY_ADDRESS) joins a Ray cluster, `--cluster NAME`
    one that `matrix cluster start NAME` made; `--force`
    appends to an output that a different workflow or dataset wrote.
    """
    host = get_plugin_host()
    if workflow is None:  # a script that forgot the workflow must not pass as a run
        fail(f"name a workflow: matrix run WORKFLOW [overrides]; installed: {', '.join(sorted(host.registry('workflow'))) or 'none'}")
    if workflow in ("--help", "-h"):
        click.echo(click.get_current_context().get_help())
        click.echo("\nInstalled workflows:")
        for name, entry in sorted(host.registry("workflow").items()):
            click.echo(f"  {name:<20} {entry.spec.description}  [{entry.package}]")
        return
    from .config import compose, config_name

    args = _run_flags(list(overrides))
    spec = host.get("workflow", workflow)
    plain_overrides = [a for a in args if not a.startswith("-")]
    hydra_flags = [a for a in args if a.startswith("-")]
    if not hydra_flags:
        cfg = compose(workflow, plain_overrides)  # validates: one line per bad key or value
        _execute(cfg, host)
        return
    if "--help" in hydra_flags or "-h" in hydra_flags:
        from ._private.help import options_help

        click.echo(options_help(workflow, plain_overrides, host) + "\n")
    _run_hydra_main(config_name(spec), workflow, args, host)


def _execute(cfg: dict, host: PluginHost) -> None:
    from ._private.driver import execute

    summary = execute(cfg, host)
    click.echo(summary.text())


def _run_hydra_main(config_name: str, workflow: str, args: list[str], host: PluginHost) -> None:
    """Hand the command line to Hydra itself, for --help, --cfg, --info, -m and friends."""
    import hydra

    from .config import CONFIG_MODULE, register_nodes, to_plain

    register_nodes()

    def task(cfg) -> None:
        try:
            _execute(to_plain(cfg), host)
        except MatrixError as exc:
            fail(str(exc))

    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from .config import one_line

    flags, overrides = _hydra_argv(args, workflow)
    args = flags + overrides
    if not {"-m", "--multirun", "--help", "-h", "--hydra-help"} & set(flags):
        # Hydra reports a bad override in several lines: compose it here first (sweeps excepted).
        from .config import compose

        compose(workflow, overrides)
    app = hydra.main(config_path=f"pkg://{CONFIG_MODULE}", config_name=config_name, version_base="1.3")(task)
    argv = sys.argv
    sys.argv = [f"matrix run {workflow}", *args]
    try:
        app()
    except (HydraException, OmegaConfBaseException, ValueError) as exc:  # Hydra's own flag checks (-m with --cfg)
        fail(f"workflow {workflow!r}: {one_line(exc)}")
    finally:
        sys.argv = argv


_HYDRA_VALUE_FLAGS = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                      "--config-dir", "-cd", "--experimental-rerun"}
_HYDRA_HELP = {"--help", "-h", "--hydra-help", "--version", "--shell-completion", "-sc"}


def _hydra_argv(args: list[str], workflow: str) -> list[str]:
    """Flags first, then overrides (argparse cannot take them interleaved), checked by Hydra's
    own parser so a bad flag is one line rather than a usage dump."""
    from hydra._internal.utils import get_args_parser

    flags, overrides, it = [], [], iter(args)
    for arg in it:
        if arg.startswith("-"):
            flags.append(arg)
            if arg in _HYDRA_VALUE_FLAGS or (arg in ("--info", "-i")):
                value = next(it, None)
                if value is not None:
                    if arg in ("--info", "-i") and "=" in value:
                        overrides.append(value)  # --info takes an optional value: this is an override
                    else:
                        flags.append(value)
        else:
            overrides.append(arg)
    if not _HYDRA_HELP & set(flags):
        parser = get_args_parser()

        def error(message: str):
            raise ConfigError(f"workflow {workflow!r}: {message}")

        parser.error = error  # type: ignore[method-assign]
        parser.parse_args(flags + overrides)
    return flags, overrides


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins_command(as_json: bool) -> None:
    """List installed plugins and what each registers."""
    entries = get_plugin_host().describe()
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    for entry in entries:
        click.echo(f"{entry['name']}  ({entry['package']})")
        if "error" in entry:
            click.echo(f"    skipped: {entry['error']}")
        for kind, names in sorted(entry["registers"].items()):
            click.echo(f"    {kind}: {', '.join(sorted(names))}")


@click.group("new")
def new_command() -> None:
    """Create a new plugin package from a template."""


@new_command.command("agent")
@click.argument("name")
@click.option("-o", "--output-dir", default=".", show_default=True, type=click.Path(file_okay=False))
def new_agent(name: str, output_dir: str) -> None:
    """Render the agent-plugin template as ./matrix-plugin-NAME."""
    from ._private.scaffold import render_agent_plugin

    path = render_agent_plugin(name, output_dir)
    click.echo(f"created {path}\nnext: pip install -e {path} && matrix run {name}")
