"""`kill -9` of the driver at random points; the same command resumes; every task once."""
import os
import random
import signal
import subprocess
import time

from matrix_core.testing import assert_exactly_once, read_records


def count_lines(path):
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def test_driver_killed_at_random_points_then_resumed(tmp_path):
    out = tmp_path / "out.jsonl"
    size = 2000
    cmd = ["matrix", "run", "relay", f"dataset.size={size}", "agents.b.sleep_ms=100", "run.max_concurrent_tasks=100",
           f"output.path={out}", "run.progress=off"]
    rng = random.Random(7)
    kills = 0
    for kill_at in sorted(rng.sample(range(100, size - 300), 3)):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 120
        while count_lines(out) < kill_at and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        time.sleep(1)
        try:  # Ray leaves a few helper processes of the dead run's cluster: end them too
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        # The torn last line, if the kill landed mid-write, is cut on the next open.
    assert kills == 3
    final = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-2000:]
    records = read_records(out)
    assert_exactly_once(records, [f"{i}#0" for i in range(size)])
    assert all(r["status"] == "done" for r in records)
    assert f"{size - int(final.stdout.split(' done')[0].split()[-1])} already in output" in final.stdout
