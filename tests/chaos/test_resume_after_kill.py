"""A driver killed with SIGKILL once its tasks have checkpoints: the rerun continues those
tasks from their checkpoint, writes every task once, and ends what the dead run left."""
from matrix_core.testing import assert_exactly_once, read_records

from . import driver_runs as runs

SIZE, LAPS = 40, 4
ROUTE = ["a", "b", "c"] * LAPS


def test_a_killed_run_continues_checkpointed_tasks_and_reaps_its_leftovers(tmp_path):
    out = tmp_path / "out.jsonl"
    cmd = ["matrix", "run", "relay", f"dataset.size={SIZE}", f"laps={LAPS}", "agents.b.sleep_ms=1500", "run.hosts=2",
           "run.max_concurrent_tasks=20", "run.checkpoint_every=2", f"output.path={out}", "run.progress=off"]
    first = runs.start(cmd)
    dead = final = None
    try:
        # Kill once several unfinished tasks have a checkpoint of 4+ steps on disk (of 12
        # steps, 4 of which sleep 1.5 s: most are still running when the driver dies).
        runs.wait_until(first, lambda: runs.ray_ids(out, first) and sum(
            e["steps"] >= 4 for t, e in runs.checkpoints(out).items() if t not in runs.written_ids(out)) >= 5,
            "5 unfinished tasks with a checkpoint")
        dead = runs.ray_ids(out, first)
        runs.kill_driver(first)
        # Ray's agents outlive a SIGKILLed driver on a busy machine (on a quiet one they may exit
        # by themselves): whichever is left, the rerun must end it (tests/test_leftovers.py
        # covers the reaping itself with processes that never exit).
        # The dead run's actors may finish a few tasks before Ray notices; the rest wait.
        dead_pids = {pid for e in runs.checkpoints(out).values() for _, pid in e["state"]["state"]["visits"]}

        final = runs.start(cmd)
        output = runs.finish(final)
        assert final.returncode == 0, output[-3000:]
        assert runs.processes_of(dead) == [], "the rerun ends every process of the dead run's Ray"

        records = read_records(out)
        assert_exactly_once(records, [f"{i}#0" for i in range(SIZE)])
        continued = 0
        for r in records:
            assert r["status"] == "done"
            # No step skipped or repeated, whichever run made it.
            assert [v[0] for v in r["state"]["visits"]] == ROUTE and r["steps"] == len(ROUTE)
            by_dead = [pid in dead_pids for _, pid in r["state"]["visits"]]
            if any(by_dead) and not all(by_dead):
                # Continued, not redone: the steps made before the kill, by the dead run's
                # processes, are kept up to a checkpoint (every 2 steps) and the rest follow.
                before = by_dead.index(False)
                assert not any(by_dead[before:]) and before % 2 == 0, r["state"]["visits"]
                continued += 1
        assert continued >= 1 and f"{continued} continued from a checkpoint" in output, output[-3000:]
        assert all([v[0] for v in r["state"]["visits"]] == ROUTE for r in records)
        assert not (tmp_path / "out.jsonl.checkpoints.jsonl").exists() and not (tmp_path / "out.jsonl.run.json").exists()
    finally:
        for proc in (first, final):
            if proc is not None and proc.poll() is None:
                runs.kill_driver(proc)
        if dead:
            runs.end_processes_of(dead)
