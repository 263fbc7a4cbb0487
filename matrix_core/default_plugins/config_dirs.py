"""The base run config (``matrix_base``) and the core's config groups (``llm/``, ``runtime/``)."""

from __future__ import annotations

from pathlib import Path

from ..hookspecs import hookimpl
from ..specs import ConfigDirSpec


@hookimpl
def register_config_dirs(register):
    register(ConfigDirSpec("matrix-core", Path(__file__).resolve().parent.parent / "conf", "base run config"))
