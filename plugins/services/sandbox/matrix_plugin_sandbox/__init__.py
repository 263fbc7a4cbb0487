"""Bubblewrap code sandboxes for Matrix: ``runtime=sandbox``.

Each task gets its own sandbox (a private work dir that keeps its files between calls);
every command runs in fresh namespaces with no network, a read-only system and hard
limits on time, memory, processes, file size and output.
"""
from __future__ import annotations

from pathlib import Path

from matrix_core import ConfigDirSpec, ToolRuntimeSpec, hookimpl

from ._process import exec_request, run_bounded
from ._workdirs import WorkRoot, read_inside, usage_bytes, write_inside
from .bwrap import BubblewrapRuntime

# run_bounded, WorkRoot and the *_inside helpers are shared with other runtimes (apptainer).
__all__ = ["BubblewrapRuntime", "WorkRoot", "exec_request", "read_inside", "run_bounded", "usage_bytes", "write_inside"]

CONF_DIR = Path(__file__).parent / "conf"


@hookimpl
def register_tool_runtimes(register):
    register(ToolRuntimeSpec("sandbox", BubblewrapRuntime, "bubblewrap: no network, read-only system, per-task work dir, rlimits"))


@hookimpl
def register_config_dirs(register):
    register(ConfigDirSpec("sandbox", CONF_DIR, "runtime/sandbox"))
