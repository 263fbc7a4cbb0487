"""Apptainer / Singularity containers as Matrix sandboxes: ``runtime=apptainer runtime.image=IMAGE``.

The same interface as ``runtime=sandbox`` (bubblewrap), one container instance per task,
``runtime.nv=true`` for GPUs. Needs apptainer (or singularity) on the machine.
"""
from __future__ import annotations

from pathlib import Path

from matrix_core import ConfigDirSpec, ToolRuntimeSpec, hookimpl

from .runtime import ApptainerRuntime

__all__ = ["ApptainerRuntime"]


@hookimpl
def register_tool_runtimes(register):
    register(ToolRuntimeSpec("apptainer", ApptainerRuntime, "apptainer/singularity instances per task (--nv for GPUs)"))


@hookimpl
def register_config_dirs(register):
    register(ConfigDirSpec("apptainer", Path(__file__).parent / "conf", "runtime/apptainer"))
