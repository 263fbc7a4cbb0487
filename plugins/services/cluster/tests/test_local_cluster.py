"""`matrix cluster --local`: a head and 2 worker raylets on this machine, token auth on.

A relay run and a simllm dialogue place their agent hosts on different worker nodes; one
worker raylet is killed mid-run, a new worker is added, both runs finish with every task
exactly once, and `stop` leaves none of the processes it started.
"""
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from matrix_core import task_id_for
from matrix_core.testing import assert_exactly_once, read_records

pytest.importorskip("matrix_plugin_simllm")
pytestmark = pytest.mark.slow

sys.path.insert(0, str(Path(__file__).parent))
from cli_helpers import WAIT_S, matrix, ok, wait_until  # noqa: E402



def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def cluster_pids(info) -> set[int]:
    """Every process of the cluster: the node runners' groups and whatever names a node's temp dir."""
    records = [info["head"], *info["workers"]]
    groups = {r["pid"] for r in records}
    temps = [r["temp_dir"] for r in records]
    pids = set()
    for p in psutil.process_iter(["cmdline"]):
        try:
            if os.getpgid(p.pid) in groups or any(t in " ".join(p.info["cmdline"] or []) for t in temps):
                pids.add(p.pid)
        except (ProcessLookupError, psutil.Error):
            pass
    return pids


def alive(pids) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.fixture
def env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
    env["MATRIX_HOME"] = str(tmp_path / "home")
    return env


@pytest.mark.timeout(2400)
def test_local_cluster_runs_survive_losing_a_worker_and_stop_leaves_nothing(env, tmp_path):
    home = Path(env["MATRIX_HOME"])
    info_file = home / "clusters" / "t1" / "cluster.json"
    seen_pids: set[int] = set()
    try:
        out = ok(matrix("cluster", "start", "t1", "--local", "--workers", "2", "--num-cpus", "1", "--head-num-cpus", "1",
                        "--resources", '{"matrix_relay": 1, "matrix_dialogue": 1}', "--timeout", "600", env=env))
        info = json.loads(info_file.read_text())
        assert stat.S_IMODE(info_file.stat().st_mode) == 0o600 and stat.S_IMODE(info_file.parent.stat().st_mode) == 0o700
        assert len(info["token"]) >= 32 and info["token"] not in out
        seen_pids |= cluster_pids(info)

        relay_out, dialogue_out = tmp_path / "relay.jsonl", tmp_path / "dialogue.jsonl"
        # One slot of each resource per worker: the two placed roles of a run land on different workers.
        relay_cmd = ["matrix", "run", "relay", "--cluster", "t1", "dataset.size=2000", "run.hosts=1", "run.max_concurrent_tasks=8",
                     "run.progress=off", f"output.path={relay_out}", "agents.a.sleep_ms=200", "agents.b.sleep_ms=200",
                     "+agents.a.resources={matrix_relay: 1}", "+agents.b.resources={matrix_relay: 1}"]
        dialogue_cmd = ["matrix", "run", "dialogue", "--cluster", "t1", "llm=simllm", "llm.time_scale=1",
                        "run.max_concurrent_tasks=1", "run.progress=off", f"output.path={dialogue_out}",
                        "+agents.questioner.resources={matrix_dialogue: 1}", "+agents.answerer.resources={matrix_dialogue: 1}"]
        relay = subprocess.Popen(relay_cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        dialogue = subprocess.Popen(dialogue_cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

        def placed():
            for proc in (relay, dialogue):  # a run that ended before being placed: say why, now
                assert proc.poll() is None or proc.returncode == 0, proc.communicate()[0][-3000:]
            status = json.loads(ok(matrix("cluster", "status", "t1", "--json", env=env)))
            live = status["live"]
            runs = [r for r in live["runs"] if all(h["state"] == "ALIVE" for h in r["hosts"]) and len(r["hosts"]) >= 2]
            return (live, runs) if len(runs) == 2 else None

        live, runs = wait_until("both runs' agent hosts to be alive", placed, every=2.0)
        head = next(n["node_id"] for n in live["nodes"] if n["head"])
        workers = {n["node_id"] for n in live["nodes"] if not n["head"]}
        for run in runs:
            # Host order: shared host(s) first, then one per placed role; the placed ones are on distinct workers.
            placed_nodes = [h["node_id"] for h in sorted(run["hosts"], key=lambda h: h["name"])[-2:]]
            assert set(placed_nodes) <= workers and len(set(placed_nodes)) == 2, run
        assert head not in workers

        # Kill a worker raylet once both runs have written something (progress, not a clock).
        wait_until("both runs to write output", lambda: lines(relay_out) >= 5 and lines(dialogue_out) >= 1, every=0.5)
        assert relay.poll() is None and dialogue.poll() is None, "a run finished before the worker could be killed"
        victim = info["workers"][0]
        raylet = next(p for p in psutil.process_iter(["name", "cmdline"])
                      if p.info["name"] == "raylet" and victim["temp_dir"] in " ".join(p.info["cmdline"] or []))
        seen_pids |= cluster_pids(info)
        raylet.kill()
        done_at_kill = lines(relay_out), lines(dialogue_out)

        ok(matrix("cluster", "add-workers", "t1", "1", env=env))
        info = json.loads(info_file.read_text())
        seen_pids |= cluster_pids(info)

        logs = []
        for proc, cmd in ((relay, relay_cmd), (dialogue, dialogue_cmd)):
            log, _ = proc.communicate(timeout=WAIT_S)
            if proc.returncode != 0 and "could not be restarted" in log:
                # The driver gives a lost agent host 60 s to come back; on a loaded machine the new
                # raylet can take longer to register. Its advice: run the same command again.
                print(f"resumed after: {log.strip().splitlines()[-1]}")
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=WAIT_S)
                log = proc.stdout + proc.stderr
            assert proc.returncode == 0, log
            logs.append(log)
        relay_log, dialogue_log = logs
        assert done_at_kill[0] < 2000 and done_at_kill[1] < 24  # the kill landed mid-run
        for path, ids in ((relay_out, [task_id_for(str(i), 0) for i in range(2000)]), (dialogue_out, None)):
            records = read_records(path)
            assert all(r["status"] == "done" for r in records), [r.get("error") for r in records if r["status"] != "done"][:3]
            if ids is None:
                ids = [r["task_id"] for r in records]
                assert len(ids) == 24
            assert_exactly_once(records, ids)
        assert info["token"] not in relay_log + dialogue_log
        status = ok(matrix("cluster", "status", "t1", env=env))
        assert "nodes: 3 alive (1 dead)" in status and info["token"] not in status
        seen_pids |= cluster_pids(info)
    finally:
        for proc in ("relay", "dialogue"):
            p = locals().get(proc)
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGINT)
        if info_file.exists():
            seen_pids |= cluster_pids(json.loads(info_file.read_text()))
            ok(matrix("cluster", "stop", "t1", env=env))
    assert not alive(seen_pids), f"left behind: {alive(seen_pids)}"
    assert not info_file.exists()
