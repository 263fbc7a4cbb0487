"""The agent-plugin template end to end: render with the CLI, install, run its tests and ``matrix run``."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from importlib.metadata import version

import pytest

from matrix_core import ConfigError
from matrix_core._private.scaffold import render_agent_plugin

NAME, DIST, MODULE = "demo_xyz", "matrix-plugin-demo-xyz", "matrix_plugin_demo_xyz"
# Subprocesses must load every installed plugin and start their own local Ray.
ENV = {k: v for k, v in os.environ.items() if k not in ("MATRIX_LOAD_PLUGINS", "MATRIX_DISABLE_PLUGINS", "RAY_ADDRESS")}


def sh(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)


def jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def can_build_wheels_in_place() -> bool:
    # --no-build-isolation builds with this environment's setuptools, which before 70.1
    # needs the separate `wheel` package for bdist_wheel.
    major, minor = (int(p) for p in version("setuptools").split(".")[:2])
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


@pytest.mark.slow
def test_rendered_plugin_installs_passes_its_tests_and_runs(tmp_path):
    if not can_build_wheels_in_place():
        pytest.skip("pip install --no-build-isolation needs the 'wheel' package or setuptools>=70.1")
    created = sh("matrix", "new", "agent", NAME, "-o", str(tmp_path))
    assert created.returncode == 0, created.stderr
    plugin = tmp_path / DIST
    assert str(plugin) in created.stdout
    try:
        installed = sh(sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(plugin))
        assert installed.returncode == 0, installed.stdout + installed.stderr

        own_tests = sh(sys.executable, "-m", "pytest", "-q", cwd=plugin)
        assert own_tests.returncode == 0, own_tests.stdout[-4000:] + own_tests.stderr[-2000:]
        assert "2 passed" in own_tests.stdout

        out = tmp_path / "out.jsonl"
        ran = sh("matrix", "run", NAME, "llm=fake", f"output.path={out}", "run.progress=off", cwd=tmp_path)
        assert ran.returncode == 0, ran.stderr[-4000:]
        seed = jsonl(plugin / MODULE / "data" / "seed.jsonl")
        records = jsonl(out)
        assert sorted(r["row_key"] for r in records) == sorted(row["id"] for row in seed)
        assert {r["status"] for r in records} == {"done"}
        assert all(r["history"][0]["agent"] == "writer" and "score" in r["state"] for r in records)
    finally:
        sh(sys.executable, "-m", "pip", "uninstall", "-y", "-q", DIST)


@pytest.mark.parametrize("name", ["Echo", "my-agent", "1st", "_x", "", "a b"])
def test_bad_names_are_refused(name, tmp_path):
    with pytest.raises(ConfigError, match="invalid plugin name"):
        render_agent_plugin(name, str(tmp_path))
    assert not any(tmp_path.iterdir())


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path):
    bad = sh("matrix", "new", "agent", "Bad-Name", "-o", str(tmp_path))
    assert (bad.returncode, bad.stderr.count("\n")) == (2, 1), bad.stderr
    assert bad.stderr.startswith("matrix: error: invalid plugin name 'Bad-Name'")

    existing = tmp_path / "matrix-plugin-taken"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    taken = sh("matrix", "new", "agent", "taken", "-o", str(tmp_path))
    assert (taken.returncode, taken.stderr.count("\n")) == (2, 1), taken.stderr
    assert "already exists" in taken.stderr and "Traceback" not in taken.stderr
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]
