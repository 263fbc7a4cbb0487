"""`kill -9` of the driver at random points of its progress; the same command resumes; every
task once; each rerun ends what the killed run left. Kills are triggered by rows observed in
the output, never by a clock, so a loaded machine only makes the test slower."""
import random

from matrix_core.testing import assert_exactly_once, read_records

from . import driver_runs as runs


def test_driver_killed_at_random_points_then_resumed(tmp_path):
    out = tmp_path / "out.jsonl"
    size = 2000
    cmd = ["matrix", "run", "relay", f"dataset.size={size}", "agents.b.sleep_ms=100", "run.max_concurrent_tasks=100",
           f"output.path={out}", "run.progress=off"]
    rng = random.Random(7)
    dead_runs, procs = [], []
    try:
        for _ in range(3):
            kill_after = rng.randint(50, 300)  # new rows this run writes before it dies
            proc = runs.start(cmd)
            procs.append(proc)
            # It has ended what the killed run left (whose actors may still have been
            # writing) once it records its own ids; count its rows from there.
            runs.wait_until(proc, lambda: runs.ray_ids(out, proc), "the run's ids in its state file")
            before = len(runs.lines(out))
            runs.wait_until(proc, lambda: len(runs.lines(out)) >= before + kill_after, f"{kill_after} new rows in the output")
            dead_runs.append(runs.ray_ids(out, proc))
            runs.kill_driver(proc)
            # The torn last line, if the kill landed mid-write, is cut on the next open.
        final = runs.start(cmd)
        procs.append(final)
        output = runs.finish(final)
        assert final.returncode == 0, output[-3000:]
        for dead in dead_runs:
            assert runs.processes_of(dead) == [], "each rerun ends the processes the killed run left"
        records = read_records(out)
        assert_exactly_once(records, [f"{i}#0" for i in range(size)])
        assert all(r["status"] == "done" for r in records)
        summary = output.strip().splitlines()[-1]
        assert f"{size - int(summary.split(' done')[0].split()[-1])} already in output" in summary
    finally:
        for proc in procs:
            if proc.poll() is None:
                runs.kill_driver(proc)
        for dead in dead_runs:
            runs.end_processes_of(dead)
