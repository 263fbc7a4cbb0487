"""Every numeric key of the typed options x {text, negative, zero, huge, float, nan}, plus
bools, enums and paths: a value a key cannot take is one line naming key, value and what
was expected, before anything starts.

Which values a key refuses is derived here from its declared type and bounds (so a new key
is covered the day it is added); that the CLI refuses them with the right line is what is
tested. Values a key accepts are not run here (they would start whole runs).
"""
from __future__ import annotations

import math
import typing

import annotated_types
import pytest
from pydantic.fields import FieldInfo

from matrix_core.options import CacheOptions, DatasetOptions, LLMClientOptions, RoleOptions, RunOptions

from .conftest import cli, one_error

VALUES = {"text": "abc", "negative": "-1", "zero": "0", "huge": "1e999", "float": "1.5", "nan": "nan", "big_int": str(10**30)}


def _numeric(info: FieldInfo) -> tuple[type, list] | None:
    """(int or float, bound metadata) of a numeric field, else None."""
    def walk(annotation, metadata):
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            inner, *extra = typing.get_args(annotation)
            return walk(inner, metadata + [m for e in extra for m in getattr(e, "metadata", [e])])
        if origin in (typing.Union, __import__("types").UnionType):
            for arg in typing.get_args(annotation):
                found = walk(arg, metadata)
                if found:
                    return found
            return None
        return (annotation, metadata) if annotation in (int, float) else None

    return walk(info.annotation, list(info.metadata))


def _refused(kind: type, bounds: list, raw: str) -> bool:
    """Whether a key of type ``kind`` with ``bounds`` must refuse the command-line value ``raw``."""
    try:
        value = float(raw)
    except ValueError:
        return True  # text
    if not math.isfinite(value):
        return True  # inf, nan: no key means "forever" by a number
    if kind is int and not value.is_integer():
        return True
    for b in bounds:
        if (isinstance(b, annotated_types.Ge) and not value >= b.ge) or (isinstance(b, annotated_types.Gt) and not value > b.gt) \
                or (isinstance(b, annotated_types.Le) and not value <= b.le) or (isinstance(b, annotated_types.Lt) and not value < b.lt):
            return True
    return False


def _agent_option_models():
    from matrix_plugin_relay import RelayOptions, Stamp

    from matrix_plugin_dialogue import Answerer

    return [("relay", "agents.a", Stamp.Options), ("relay", "", RelayOptions), ("dialogue", "agents.answerer", Answerer.Options)]


def _cases():
    targets = [("relay", "run", RunOptions), ("relay", "dataset", DatasetOptions), ("relay", "cache", CacheOptions),
               ("dialogue", "llm.client", LLMClientOptions), ("relay", "agents.a", RoleOptions), *_agent_option_models()]
    for workflow, where, model in targets:
        for name, info in model.model_fields.items():
            found = _numeric(info)
            if found is None:
                continue
            kind, bounds = found
            for label, raw in VALUES.items():
                if label == "big_int" and not any(isinstance(b, (annotated_types.Le, annotated_types.Lt)) for b in bounds):
                    continue  # a big integer is a fine value for an unbounded key
                if _refused(kind, bounds, raw):
                    key = f"{where}.{name}" if where else name
                    yield pytest.param(workflow, key, raw, id=f"{key}={label}")


CASES = list(_cases())


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workflow, key, raw", CASES)
def test_numeric_key_refuses_bad_value(workflow, key, raw):
    line = one_error(cli("run", workflow, "llm=fake" if workflow == "dialogue" else "run.progress=off", f"++{key}={raw}"), f"{key}=", "expected")
    assert "expected a" in line or "expected an" in line or "expected one of" in line, line


def test_the_generated_cases_cover_every_section():
    assert len(CASES) >= 100
    assert {case.values[1].split(".")[0] for case in CASES} >= {"run", "dataset", "cache", "llm", "agents", "laps"}


# Booleans, enums, paths and other typed keys.
OTHER = [
    ("relay", "run.colocate=maybe", "run.colocate='maybe': expected true or false"),
    ("relay", "run.force=2", "run.force=2: expected true or false"),
    ("relay", "resume.retry_failed=perhaps", "resume.retry_failed='perhaps': expected true or false"),
    ("relay", "cache.enabled=sure", "cache.enabled='sure': expected true or false"),
    ("relay", "run.progress=none", "run.progress='none': expected one of 'auto', 'bar', 'lines', 'off'"),
    ("relay", "run.progress=7", "run.progress=7: expected one of"),
    ("relay", "run.hosts=many", "run.hosts='many': expected an integer >= 1 and <= 4096 or 'auto'"),
    ("dialogue", "llm.client.tool_calling=smoke", "llm.client.tool_calling='smoke': expected one of 'native', 'prompted', 'auto'"),
    ("dialogue", "llm.client.params=7", "llm.client.params=7: expected a mapping"),
    ("relay", "run.address=[1,2]", "run.address=[1, 2]: expected a string or null"),
    ("relay", "dataset.path=[a]", "dataset.path=['a']: expected a string or null"),
    ("relay", "output.path={a: 1}", "output.path={'a': 1}: expected a string"),
    ("relay", "cache.path=[x]", "cache.path=['x']: expected a string"),
    ("relay", "++agents.a.resources=gpu", "agents.a.resources='gpu': expected a mapping"),
    ("relay", "run=5", "run=5: expected a mapping of options"),
    ("relay", "dataset=abc", "dataset"),
    ("relay", "+run.bogus=1", "run.bogus is not an option (known: "),
    ("relay", "+resume.retryfailed=true", "resume.retryfailed is not an option"),
    ("relay", "agents.a.type=nope", "unknown agent 'nope'; installed: "),
    ("relay", "+agents.z.sleep_ms=1", "agents.z.type is missing"),
    ("relay", "+agents.z={}", "agents.z.type is missing"),
    ("relay", "~agents", "configures no agents"),
    ("relay", "dataset.loader=nope", "unknown dataset loader 'nope'; installed: "),
    ("relay", "sink.name=nope", "unknown sink 'nope'; installed: "),
    ("relay", "+runtime.name=nope", "unknown tool runtime 'nope'"),
    ("dialogue", "rounds=abc", "rounds='abc': expected an integer >= 1"),  # a workflow's own key: at start, not per row
    ("dialogue", "rounds=0", "rounds=0: expected an integer >= 1"),
    ("coral", "max_turns=1", "max_turns=1: expected an integer >= 2"),
    ("codegen", "max_attempts=x", "max_attempts='x': expected an integer >= 1"),
    ("tau2", "max_steps=abc", "max_steps='abc': expected an integer >= 1"),
    ("tau2", "max_errors=0", "max_errors=0: expected an integer >= 1"),
    ("relay", "laps=1e999", "laps=inf: expected an integer"),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workflow, override, expected", [pytest.param(*c, id=c[1]) for c in OTHER])
def test_typed_key_refuses_bad_value(workflow, override, expected):
    one_error(cli("run", workflow, "llm=fake" if workflow in ("dialogue", "coral", "codegen", "tau2") else "run.progress=off", override), expected)
