"""docs/plugins.md documents every hook of hookspecs.py with its exact signature and a working example."""

import dataclasses
import inspect
import re
from pathlib import Path

import pytest

from matrix_core import hookspecs
from matrix_core.specs import SPEC_KINDS

DOC = (Path(__file__).resolve().parent.parent / "docs" / "plugins.md").read_text()
HOOKS = {f"register_{kind}s": spec for kind, spec in SPEC_KINDS.items()}


def sections() -> dict[str, str]:
    reference = DOC.split("## Hook reference", 1)[1].split("\n## ", 1)[0]
    parts = re.split(r"^### (\w+)\n", reference, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def hook_signature(name: str) -> str:
    return f"def {name}{inspect.signature(getattr(hookspecs, name))}".replace("'", "")


def spec_signature(cls: type) -> str:
    def field(f: dataclasses.Field) -> str:
        default = "" if f.default is dataclasses.MISSING else (' = ""' if f.default == "" else f" = {f.default!r}")
        return f"{f.name}: {f.type}{default}".replace("'", "")

    return f"{cls.__name__}({', '.join(field(f) for f in dataclasses.fields(cls))})"


def test_every_hook_is_documented_and_nothing_else():
    declared = {n for n, v in vars(hookspecs).items() if n.startswith("register_") and callable(v)}
    assert set(sections()) == declared == set(HOOKS)


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_signatures_match_the_code(hook):
    blocks = [b.strip() for b in code_blocks(sections()[hook])]
    assert hook_signature(hook) in blocks, f"docs/plugins.md: {hook} should show `{hook_signature(hook)}`"
    assert spec_signature(HOOKS[hook]) in blocks, f"docs/plugins.md: {hook} should show `{spec_signature(HOOKS[hook])}`"


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_the_example_registers_a_spec_of_the_right_type(hook):
    example = code_blocks(sections()[hook].split("Example:", 1)[1])[0]
    namespace: dict = {"__file__": "matrix_plugin_example/__init__.py", "__name__": "matrix_plugin_example"}
    exec(compile(example, f"docs/plugins.md:{hook}", "exec"), namespace)
    registered: list = []
    namespace[hook](registered.append)
    assert registered and all(isinstance(spec, HOOKS[hook]) for spec in registered)
    assert getattr(namespace[hook], "matrix_impl", None) is not None  # marked with @hookimpl


def test_the_tutorial_starts_from_matrix_new_agent():
    tutorial = DOC.split("## Tutorial", 1)[1]
    assert "matrix new agent" in tutorial and "matrix run" in tutorial and "pytest" in tutorial
