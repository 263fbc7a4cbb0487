"""The README's plugin example runs as written: its three files, installed, `matrix run` on the fake LLM."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def example_files() -> dict[str, str]:
    """The code blocks of "Writing a plugin" that start with a ``# path`` comment."""
    section = README.split("## Writing a plugin", 1)[1].split("\n## ", 1)[0]
    files = {}
    for body in re.findall(r"```(?:python|yaml|toml)\n(.*?)```", section, flags=re.S):
        first, _, rest = body.partition("\n")
        files[first.removeprefix("# ").strip()] = rest
    return files


def test_the_example_is_three_files():
    assert set(example_files()) == {
        "matrix_plugin_summarise/__init__.py", "matrix_plugin_summarise/conf/summarise.yaml", "pyproject.toml",
    }  # fmt: skip


@pytest.mark.slow
def test_the_readme_plugin_example_runs_as_written(tmp_path):
    package = tmp_path / "matrix-plugin-summarise"
    for path, text in example_files().items():
        (package / path).parent.mkdir(parents=True, exist_ok=True)
        (package / path).write_text(text)
    site = tmp_path / "site"  # installed here, not into the shared environment
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site)]
    installed = subprocess.run([*pip, str(package)], capture_output=True, text=True, timeout=300, check=False)
    assert installed.returncode == 0, installed.stderr[-3000:]

    (tmp_path / "texts.jsonl").write_text("".join(json.dumps({"id": i, "text": f"text {i}"}) + "\n" for i in range(3)))
    drop = ("RAY_ADDRESS", "MATRIX_LOAD_PLUGINS", "MATRIX_DISABLE_PLUGINS")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH")) if p)
    ran = subprocess.run(
        ["matrix", "run", "summarise", "llm=fake", "run.progress=off", "run.num_cpus=2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "outputs" / "summarise.jsonl").read_text().splitlines()]
    assert sorted(r["task_id"] for r in records) == ["0#0", "1#0", "2#0"]
    assert all(r["status"] == "done" and "text" in r["history"][0]["content"] for r in records)
