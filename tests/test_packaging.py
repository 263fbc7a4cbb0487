"""Packages as users get them: declared dependencies, and one plugin at a time from dist/."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest

from matrix_core.config import compose
from matrix_core.plugins import get_plugin_host

ROOT = Path(__file__).resolve().parent.parent
PYPROJECTS = {tomllib.loads(p.read_text())["project"]["name"]: p for p in ROOT.glob("plugins/*/*/pyproject.toml")}


def declared(dist: str) -> set[str]:
    deps = tomllib.loads(PYPROJECTS[dist].read_text())["project"]["dependencies"]
    return {re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0] for d in deps}


@pytest.mark.parametrize("dist", sorted(d for d, p in PYPROJECTS.items() if p.parent.parent.name == "agents"))
def test_an_agent_plugin_depends_on_the_plugin_behind_its_default_llm(dist):
    host = get_plugin_host()
    for name, entry in host.registry("workflow").items():
        if entry.package != dist:
            continue
        backend = compose(name, []).get("llm", {}).get("backend")
        if backend is None:
            continue  # a workflow without an LLM
        provider = host.registry("llm_backend")[backend].package
        assert provider in {dist, "matrix-core"} | declared(dist), (
            f"{dist}: workflow {name!r} defaults to llm backend {backend!r} from {provider}, which it does not depend on"
        )


def test_every_plugin_declares_the_core_versions_it_works_with():
    core = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    major, minor = core.split(".")[:2]
    for dist, path in PYPROJECTS.items():
        deps = tomllib.loads(path.read_text())["project"]["dependencies"]
        assert f"matrix-core>={major}.{minor},<{major}.{int(minor) + 1}" in deps, dist


# --- a fresh virtual environment, as a user has ---------------------------------------

# Only what a user's shell has: nothing from this checkout or this test session.
CLEAN_ENV = {
    k: v
    for k, v in os.environ.items()
    if k not in ("PYTHONPATH", "RAY_ADDRESS", "VIRTUAL_ENV") and not k.startswith("MATRIX_")
}


@pytest.mark.slow
@pytest.mark.timeout(3600)  # builds six packages and installs Ray into a fresh venv
def test_a_user_installs_one_plugin_at_a_time_from_dist(tmp_path):
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, str(ROOT / "scripts/build_dists.py"), "--out", str(dist), "--only", "matrix-core",
         "matrix-plugin-jsonl", "matrix-plugin-llamacpp", "matrix-plugin-tau2", "matrix-plugin-parquet",
         "matrix-plugin-simllm"],
        capture_output=True, text=True, timeout=1200, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    assert {p.name for p in dist.glob("*.tar.gz")} >= {"matrix_core-0.2.0.tar.gz", "matrix_plugin_tau2-0.1.0.tar.gz"}

    venv.create(tmp_path / "venv", with_pip=True)  # truly fresh: no system site-packages
    bin_dir = tmp_path / "venv" / "bin"
    env = {**CLEAN_ENV, "PATH": f"{bin_dir}{os.pathsep}{CLEAN_ENV['PATH']}"}

    def sh(*argv: str, timeout: int = 900) -> subprocess.CompletedProcess:
        proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        assert proc.returncode == 0, f"{' '.join(argv)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc

    def plugins() -> dict[str, dict]:
        return {e["name"]: e for e in json.loads(sh("matrix", "plugins", "--json").stdout)}

    run = [
        "run.progress=off",
        "run.num_cpus=2",
        "task_ids=[update_task_1,update_task_with_message_history]",
        "max_steps=4",
    ]

    # An agent plugin: as the README says, `pip install --find-links dist matrix-plugin-tau2`.
    sh(str(bin_dir / "pip"), "install", "-q", "--find-links", str(dist), "matrix-plugin-tau2", timeout=1800)
    installed = plugins()
    assert {"tau2", "jsonl", "llamacpp", "core.commands"} <= set(installed) and not any(
        "error" in e for e in installed.values()
    )
    sh("matrix", "run", "tau2", "llm=fake", "output.path=tau2.jsonl", *run)
    lines = (tmp_path / "tau2.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["task_id"] for line in lines) == [
        "update_task_1#0",
        "update_task_with_message_history#0",
    ]

    # A sink plugin.
    sh(str(bin_dir / "pip"), "install", "-q", "--find-links", str(dist), "matrix-plugin-parquet")
    assert plugins()["parquet"]["registers"]["sink"] == ["parquet"]
    sh("matrix", "run", "tau2", "llm=fake", "sink=parquet", "output.path=tau2.parquet", *run)
    rows = sh(
        str(bin_dir / "python"), "-c", "import pyarrow.parquet as pq; print(pq.read_table('tau2.parquet').num_rows)"
    )
    assert rows.stdout.strip() == "2"

    # A service plugin: simulated LLM servers started by the run.
    sh(str(bin_dir / "pip"), "install", "-q", "--find-links", str(dist), "matrix-plugin-simllm")
    assert plugins()["simllm"]["registers"]["llm_backend"] == ["simllm"]
    sh("matrix", "run", "tau2", "llm=simllm", "llm.time_scale=50", "output.path=sim.jsonl", *run)
    assert len((tmp_path / "sim.jsonl").read_text().splitlines()) == 2
