"""The hostile-input suite: every bad input gets exit 2 and one ``matrix: error:`` line.

Cases run the real ``matrix`` command in-process (click's CliRunner keeps stderr apart) on
the session Ray; a real subprocess only where the process boundary is the point (a hang, a
traceback printed by the interpreter). Bounds are generous ``timeout`` marks, never timed
assertions.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

ERROR = "matrix: error: "


def cli(*args: str, env: dict | None = None):
    """``matrix ARGS`` in this process; returns click's Result (stdout and stderr apart)."""
    from matrix_core import plugins
    from matrix_core.cli import main

    host = plugins._host  # `-p no:NAME` installs a host of its own: the next case must not inherit it
    try:
        return CliRunner().invoke(main, list(args), env=env, catch_exceptions=True)
    finally:
        plugins.set_plugin_host(host)


def matrix_subprocess(*args: str, timeout: float = 240, env: dict | None = None, cwd=None):
    """``matrix ARGS`` as its own process (what the interpreter prints is part of the check)."""
    return subprocess.run(["matrix", *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


def one_error(result, *expected: str, code: int = 2) -> str:
    """Asserts exit ``code``, exactly one ``matrix: error:`` line holding every ``expected``
    text, and no traceback; returns the line."""
    exit_code = getattr(result, "exit_code", None)
    if exit_code is None:
        exit_code = result.returncode
    stderr = result.stderr
    exception = getattr(result, "exception", None)
    assert not (exception is not None and not isinstance(exception, SystemExit)), f"raised {exception!r}\n{stderr}"
    assert "Traceback" not in stderr and "Traceback" not in result.stdout, stderr
    lines = [line for line in stderr.splitlines() if line.startswith(ERROR)]
    assert len(lines) == 1, f"expected one error line, got {len(lines)}:\n{stderr}"
    assert exit_code == code, f"exit {exit_code}, expected {code}: {stderr}"
    for text in expected:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    return lines[0]


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_bytes().splitlines()]


def by_id(path: Path) -> dict[str, dict]:
    out = {}
    for record in records(path):
        assert record["task_id"] not in out, f"{record['task_id']} written twice"
        out[record["task_id"]] = record
    return out


RUN = ("run.progress=off", "run.hosts=1")  # small and quiet: one agent host


@pytest.fixture
def data_run(matrix_ray, tmp_path):
    """``data_run(dataset_file, loader, *overrides)``: relay over a file on the session Ray;
    returns (result, output path)."""
    def run(dataset: Path, loader: str, *overrides: str, out: Path | None = None):
        out = out or tmp_path / "out.jsonl"
        result = cli("run", "relay", *RUN, f"dataset.loader={loader}", f"dataset.path={dataset}",
                     f"output.path={out}", *overrides)
        return result, out

    return run
