"""Prompt templates: Jinja2 in a sandbox, strict about undefined names.

A template sees the row's columns by name (``{{ question }}``), the whole row as ``row``
(for column names that are not identifiers: ``{{ row["first name"] }}``) and the output of
every earlier step by the step's name (``{{ draft }}``, ``{{ score.reasons }}``).
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, meta
from jinja2.sandbox import SandboxedEnvironment

from matrix_core import ConfigError

ENV = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)
# Jinja's own ``tojson`` escapes <, > and & for HTML; prompts want the JSON as it is.
ENV.filters["json"] = lambda value, indent=None: json.dumps(value, ensure_ascii=False, indent=indent)


class RenderError(ValueError):
    """A template that cannot be rendered for one row: that task fails, the run goes on."""


class Template:
    def __init__(self, source: str, where: str):
        self.where = where
        try:
            self.names = frozenset(meta.find_undeclared_variables(ENV.parse(source)))
            self._template = ENV.from_string(source)
        except TemplateSyntaxError as exc:
            raise ConfigError(f"{where}: template syntax error on line {exc.lineno}: {exc.message}") from None

    def render(self, variables: Mapping[str, Any]) -> str:
        try:
            return self._template.render(variables)
        except TemplateError as exc:  # undefined names, sandbox violations
            raise RenderError(f"{self.where}: {exc.message or exc}") from None
        except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
            raise RenderError(f"{self.where}: {type(exc).__name__}: {exc}") from None

    def unknown_names(self, known: Iterable[str]) -> list[str]:
        return sorted(self.names - set(known))


class Placeholder:
    """Stands in for an earlier step's output when templates are checked before any call:
    any attribute, item or iteration works and renders as an empty string."""

    def __getattr__(self, name: str) -> "Placeholder":
        if name.startswith("__"):
            raise AttributeError(name)
        return self

    def __getitem__(self, key: Any) -> "Placeholder":
        return self

    def __iter__(self):
        return iter(())

    def __len__(self) -> int:
        return 0

    def __str__(self) -> str:
        return ""
