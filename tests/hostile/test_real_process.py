"""The issue's own examples as a user types them: a real `matrix` process, so whatever the
interpreter itself would print (a traceback at exit, a hang) is part of the check."""
from __future__ import annotations

import pytest

from .conftest import matrix_subprocess, one_error

CASES = [
    (["run"], "name a workflow"),
    (["run", "relay", "dataset.size=abc"], "dataset.size='abc': expected an integer >= 0 or null"),
    (["run", "relay", "output.path="], "sink.path is not set"),
    (["run", "relay", "sink.fsync=bogus"], "sink.fsync must be 'batch' or 'none'"),
    (["run", "relay", "=5"], "workflow 'relay': "),
    (["run", "relay", "~run"], "config section 'run' was removed"),
    (["run", "relay", "-m", "dataset.size=1", "--cfg", "job"], "Only one of --run, --multirun, --cfg"),
    (["new", "agent", "x", "-o", "/proc/nope"], "cannot create /proc/nope/matrix-plugin-x"),
]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("args, expected", [pytest.param(a, e, id=" ".join(a)) for a, e in CASES])
def test_issue_example_in_a_real_process(tmp_path, args, expected):
    if args[:2] == ["run", "relay"] and "output.path=" not in args and "-m" not in args:
        args = [*args, f"output.path={tmp_path / 'o.jsonl'}"]  # should one get through, it writes here
    one_error(matrix_subprocess(*args, cwd=tmp_path), expected)
    assert not (tmp_path / "o.jsonl").exists()
