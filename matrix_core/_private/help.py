"""``matrix run WORKFLOW --help``: every typed option with its type, default and description."""
from __future__ import annotations

from typing import Any, Mapping

from pydantic import BaseModel

from ..errors import MatrixError
from ..options import ROLE_KEYS, SECTIONS, LLMClientOptions, RoleOptions, describe_fields
from ..plugins import PluginHost

COMMON = ("run", "resume", "dataset", "output")


def options_help(workflow: str, overrides: list[str], host: PluginHost) -> str:
    """The workflow's options; defaults are what this workflow (with ``overrides``) gives."""
    from ..config import compose

    try:
        cfg: Mapping[str, Any] = compose(workflow, overrides)
    except MatrixError as exc:  # e.g. a backend key left ??? : still show the models' defaults
        cfg = {}
        note = f"(defaults of the models: the config does not compose yet: {exc})\n"
    else:
        note = ""
    lines = [f"Options of `matrix run {workflow}` (set with KEY=VALUE){note and ' '}{note}"]
    for name in COMMON:
        lines += _section(name, SECTIONS[name], cfg.get(name))
    lines += _section("llm.client", LLMClientOptions, (cfg.get("llm") or {}).get("client"))
    for role, section in (cfg.get("agents") or {}).items():
        lines += _role(role, section or {}, host)
    return "\n".join(lines)


def _role(role: str, section: Mapping[str, Any], host: PluginHost) -> list[str]:
    try:
        spec = host.get("agent", section.get("type"))
    except MatrixError:
        return _section(f"agents.{role}", RoleOptions, section)
    own = {k: v for k, v in section.items() if k not in ROLE_KEYS}
    lines = _section(f"agents.{role} ({spec.name}: {spec.description})", RoleOptions, section)
    lines += _rows(describe_fields(spec.cls.Options, own))
    declared = set(spec.cls.Options.model_fields)
    lines += _rows([(k, "", repr(v), "(not declared by the agent)") for k, v in own.items() if k not in declared])
    return lines


def _section(title: str, model: type[BaseModel], values: Mapping[str, Any] | None) -> list[str]:
    return ["", f"{title}:", *_rows(describe_fields(model, values or {}))]


def _rows(rows: list[tuple[str, str, str, str]]) -> list[str]:
    out = []
    for name, type_, default, description in rows:
        default = default if len(default) <= 40 else default[:37] + "..."
        out.append(f"  {name:<28} {type_:<22} {default:<20} {description}")
    return out
