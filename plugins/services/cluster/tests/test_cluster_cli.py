"""`matrix cluster` bad input, the cluster info file, and `--cluster` for run and services (no cluster started)."""
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest


def matrix(*args, env, timeout=600):
    return subprocess.run(["matrix", *args], capture_output=True, text=True, timeout=timeout, env=env)


def one_error(proc):
    lines = [line for line in proc.stderr.splitlines() if line.startswith("matrix: error:")]
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MATRIX_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def env(home):
    return {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "MATRIX_HOME": str(home)}


def test_info_file_is_owner_only_and_a_name_in_use_is_refused(home, env):
    from matrix_plugin_cluster import state

    info = state.create("c1", "local", port=1234, options={"timeout": 5})
    path = home / "clusters" / "c1" / "cluster.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700 and stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700
    assert json.loads(path.read_text())["token"] == info["token"] and len(info["token"]) == 64
    assert state.create("c2", "local", options={})["token"] != info["token"]
    line = one_error(matrix("cluster", "start", "c1", "--local", env=env))
    assert "cluster 'c1' already exists" in line and "matrix cluster stop c1" in line


def test_stop_status_and_run_of_an_unknown_cluster_list_the_known_ones(home, env):
    from matrix_plugin_cluster import state

    state.create("alpha", "local", options={})
    state.create("beta", "local", options={})
    assert one_error(matrix("cluster", "stop", "nope", env=env)) == "matrix: error: unknown cluster 'nope'; known: alpha, beta"
    assert "known: alpha, beta" in one_error(matrix("cluster", "status", "nope", env=env))
    assert "unknown cluster 'nope'" in one_error(matrix("run", "relay", "--cluster", "nope", env=env))
    assert "unknown cluster 'nope'" in one_error(matrix("services", "list", "--cluster", "nope", env=env))
    assert "no head address yet" in one_error(matrix("run", "relay", "--cluster", "alpha", env=env))
    out = matrix("cluster", "list", env=env).stdout
    assert "alpha" in out and "beta" in out


def test_cluster_flag_sets_the_address_and_token_for_ray_only_in_process(home, env):
    from matrix_plugin_cluster import state

    with state.update(state.create("c", "local", options={})["name"]) as info:
        info["address"] = "10.0.0.1:6379"
    # In a process of its own: join() resets Ray's token cache, which would cut this test
    # process off from the session's Ray.
    probe = ("import json, os, ray; from matrix_core._private.clusters import join; address = join('c'); "
             "print(json.dumps([address, os.environ.get('RAY_AUTH_MODE'), os.environ.get('RAY_AUTH_TOKEN'), "
             "'RAY_AUTH_TOKEN_PATH' in os.environ]))")
    env = {**{k: v for k, v in env.items() if k not in ("RAY_AUTH_TOKEN", "RAY_AUTH_MODE")}, "RAY_AUTH_TOKEN_PATH": "/elsewhere"}
    proc = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == ["10.0.0.1:6379", "token", info["token"], False]


def test_bad_resources_and_sbatch_lines_are_one_line_errors(home, env):
    assert "--resources '{oops' is not a JSON object" in one_error(matrix("cluster", "start", "x", "--local", "--resources", "{oops", env=env))
    assert "--time 'soon'" in one_error(matrix("cluster", "start", "x", "--local", "--time", "soon", env=env))
    from matrix_plugin_cluster.executors import parse_sbatch_lines

    assert parse_sbatch_lines(["#SBATCH --exclusive", "--constraint=h100 --reservation=r1"]) == {
        "exclusive": True, "constraint": "h100", "reservation": "r1"}
    with pytest.raises(Exception, match="give long options"):
        parse_sbatch_lines(["-C h100"])


@pytest.mark.slow
def test_a_head_that_fails_to_start_shows_its_log_tail_and_leaves_nothing(home, env):
    # Ray refuses CPU as a custom resource: `ray start --head` exits at once.
    proc = matrix("cluster", "start", "bad", "--local", "--head-resources", '{"CPU": 1}', "--timeout", "300", env=env)
    assert proc.returncode == 2 and "Traceback (most recent call last)" not in proc.stderr.split("matrix: error:")[-1], proc.stderr
    error = proc.stderr[proc.stderr.index("matrix: error:"):]
    assert "head (pid" in error and "exited; last lines of" in error and "--num-cpus" in error, error
    assert not (Path(home) / "clusters" / "bad").exists()


def test_slurm_time_limits_become_minutes_for_submitit():
    from matrix_plugin_cluster.executors import slurm_minutes

    assert [slurm_minutes(t) for t in ("120", "24:00:00", "1-00:00:00", "2-12", "0-00:30")] == [120, 1440, 1440, 3600, 30]
    with pytest.raises(Exception, match="give minutes or D-HH:MM:SS"):
        slurm_minutes("soon")
