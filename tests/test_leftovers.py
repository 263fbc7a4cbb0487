"""The reaper ends exactly the processes carrying a dead run's recorded ids, nothing else,
and nothing at all while the run that recorded them is alive."""
import json
import os
import subprocess
import sys

from matrix_core._private import leftovers

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


def _spawn(**env):
    return subprocess.Popen(SLEEPER, env={**os.environ, **env})


def _state(out, pid, pid_start, node_id="deadbeef" * 7, session_dir="/tmp/matrix-ray/session_x_1"):
    state = {"run_id": "r1", "pid": pid, "pid_start": pid_start, "uid": os.getuid(),
             "ray": {"node_id": node_id, "session_dir": session_dir}}
    (out.parent / (out.name + leftovers.SUFFIX)).write_text(json.dumps(state))


def test_reap_ends_only_the_dead_runs_processes(tmp_path):
    out = tmp_path / "out.jsonl"
    driver = subprocess.Popen([sys.executable, "-c", "pass"])
    start = leftovers._start_time(driver.pid)
    driver.wait()  # the run that recorded the ids is dead
    node = "ab" * 28
    session = str(tmp_path / "session_2026_1")
    ours = [_spawn(RAY_NODE_ID=node), subprocess.Popen([*SLEEPER, f"--session-dir={session}/logs"])]
    others = [_spawn(RAY_NODE_ID="cd" * 28), subprocess.Popen([*SLEEPER, f"--session-dir={session}0/logs"]), _spawn()]
    try:
        _state(out, driver.pid, start, node, session)
        assert sorted(leftovers.reap(str(out))) == sorted(p.pid for p in ours)
        assert all(p.wait(30) == -9 for p in ours)
        assert all(p.poll() is None for p in others), "another run's (or user's) processes are never touched"
        assert not (tmp_path / "out.jsonl.run.json").exists()
        assert leftovers.reap(str(out)) == []  # nothing recorded any more
    finally:
        for p in ours + others:
            p.kill()
            p.wait()


def test_a_live_run_is_left_alone(tmp_path):
    out = tmp_path / "out.jsonl"
    node = "ef" * 28
    helper = _spawn(RAY_NODE_ID=node)
    try:
        _state(out, os.getppid(), leftovers._start_time(os.getppid()), node)  # a live "driver"
        assert leftovers.reap(str(out)) == [] and helper.poll() is None
        # record() does not take over the output's state from a live run; forget() only removes its own.
        leftovers.record(str(out), "r2", started_ray=False)
        leftovers.forget(str(out), "r2")
        assert json.loads((tmp_path / "out.jsonl.run.json").read_text())["run_id"] == "r1"
        # A recycled pid (same pid, other start time) is not the run: its leftovers are ended.
        _state(out, os.getppid(), -1, node)
        assert leftovers.reap(str(out)) == [helper.pid] and helper.wait(30) == -9
    finally:
        helper.kill()
        helper.wait()


def test_a_local_ray_that_times_out_starting_is_retried_without_leftovers(monkeypatch):
    """Stand-in for a machine too busy for Ray's fixed 30 s raylet registration: the first
    ray.init starts a process and times out; the retry ends that process, then succeeds."""
    import ray

    from matrix_core._private import ray_start

    calls, spawned = [], []

    def flaky_init(**kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            spawned.append(subprocess.Popen(SLEEPER))
            raise Exception("The current node timed out during startup. This could happen because ...")

    monkeypatch.setattr(ray, "init", flaky_init)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    try:
        ray_start.init_local({"address": "local"})
        # Ended (a 600 s sleeper; its status went to the waiter that reaped it).
        assert len(calls) == 2 and spawned[0].wait(30) is not None
    finally:
        spawned[0].kill()
        spawned[0].wait()


def test_other_ray_start_failures_are_not_retried(monkeypatch):
    import pytest
    import ray

    from matrix_core._private import ray_start

    calls = []
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw) or (_ for _ in ()).throw(ValueError("bad address")))
    with pytest.raises(ValueError, match="bad address"):
        ray_start.init_local({})
    assert len(calls) == 1
