"""The `matrix` console script, as a user runs it (subprocesses)."""
import json
import re
import subprocess

import pytest

from matrix_core.testing import assert_exactly_once, read_records


def matrix(*args, timeout=300, env=None, cwd=None):
    return subprocess.run(["matrix", *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


def one_error_line(proc):
    lines = [l for l in proc.stderr.splitlines() if l.startswith("matrix: error:")]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["run", "nosuch"], "unknown workflow 'nosuch'; installed: "),
        (["run", "relay", "run.nokey=1"], "Could not override 'run.nokey'"),
        (["run", "relay", "agents.a.type=nope"], "unknown agent 'nope'; installed: "),
        (["run", "dialogue", "llm=fake", "dataset.path=/no/such.jsonl"], "dataset file not found: /no/such.jsonl"),
        (["run", "dialogue", "llm=nope"], "Could not find 'llm/nope' Available options in 'llm': "),
        (["run", "relay", "run.hosts=0"], "run.hosts=0: expected an integer >= 1 and <= 4096 or 'auto'"),
        (["-p", "no:relay", "run", "relay"], "unknown workflow 'relay'"),
        (["run", "dialogue", "llm=endpoint", "llm.base_url=http://127.0.0.1:9/v1"], "LLM endpoint http://127.0.0.1:9/v1 does not answer"),
        (["run", "dialogue", "llm=endpoint", "llm.base_url=http://127.0.0.1:9/v1", "llm.api_key_env=MATRIX_TEST_UNSET_KEY"], "MATRIX_TEST_UNSET_KEY, which is not set"),
    ],
)
def test_bad_input_is_one_clear_line(args, expected):
    assert expected in one_error_line(matrix(*args))


def test_unknown_workflow_lists_the_installed_ones():
    line = one_error_line(matrix("run", "nosuch"))
    assert "dialogue" in line and "relay" in line


def test_unknown_plugin_in_environment_lists_installed(monkeypatch):
    monkeypatch.setenv("MATRIX_LOAD_PLUGINS", "nosuch")
    assert "unknown plugin(s) nosuch; installed: " in one_error_line(matrix("plugins"))


def test_plugins_lists_what_each_registers():
    proc = matrix("plugins", "--json")
    entries = {e["name"]: e for e in json.loads(proc.stdout)}
    assert entries["jsonl"]["package"] == "matrix-plugin-jsonl"
    assert entries["jsonl"]["registers"]["sink"] == ["jsonl"]
    assert "relay" in matrix("plugins").stdout


def test_run_help_lists_workflows_and_hydra_help_works():
    proc = matrix("run", "--help")
    assert proc.returncode == 0 and "dialogue" in proc.stdout and "relay" in proc.stdout
    proc = matrix("run", "relay", "--help")
    assert proc.returncode == 0 and "Configuration groups" in proc.stdout and re.search(r"sink: .*jsonl", proc.stdout)


def test_cfg_job_prints_the_composed_config_with_overrides():
    proc = matrix("run", "relay", "run.max_concurrent_tasks=7", "--cfg", "job")
    assert proc.returncode == 0, proc.stderr
    assert "max_concurrent_tasks: 7" in proc.stdout and "workflow: relay" in proc.stdout


def test_multirun_sweeps_like_any_hydra_app(tmp_path):
    proc = matrix("run", "relay", "-m", "dataset.size=10,20", f"output.path={tmp_path}/out" + "${dataset.size}.jsonl", "run.progress=off", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "10 done" in proc.stdout and "20 done" in proc.stdout
    assert len(read_records(tmp_path / "out20.jsonl")) == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out10.jsonl", "out10.jsonl.meta.json", "out20.jsonl", "out20.jsonl.meta.json"]


def test_end_to_end_console_script(tmp_path):
    out = tmp_path / "relay.jsonl"
    proc = matrix("run", "relay", "dataset.size=300", f"output.path={out}", "run.progress=lines")
    assert proc.returncode == 0, proc.stderr
    assert "300 done, 0 failed" in proc.stdout and str(out) in proc.stdout
    assert "tasks 300/" in proc.stderr or "tasks 300 " in proc.stderr  # progress line
    assert_exactly_once(read_records(out), [f"{i}#0" for i in range(300)])
    # Rerun on the same output: nothing to do, nothing duplicated.
    proc = matrix("run", "relay", "dataset.size=300", f"output.path={out}", "run.progress=off")
    assert "0 done, 0 failed, 300 already in output" in proc.stdout
    assert_exactly_once(read_records(out), [f"{i}#0" for i in range(300)])


def test_address_flag_joins_a_running_cluster(tmp_path):
    import time

    from matrix_core.testing import ThrowawayRayHead

    with ThrowawayRayHead() as (env, address):
        out = tmp_path / "o.jsonl"
        proc = None
        for _ in range(30):  # the head takes a few seconds to accept clients
            proc = matrix("run", "relay", "dataset.size=50", f"output.path={out}", "run.progress=off",
                          "--address", address, env=env)
            if proc.returncode == 0 or "cannot start or join Ray" not in proc.stderr:
                break
            time.sleep(2)
        assert proc.returncode == 0, proc.stderr
        assert "50 done" in proc.stdout
