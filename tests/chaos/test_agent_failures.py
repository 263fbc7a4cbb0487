"""Agent hosts killed mid-run are restarted, and their tasks re-sent: none lost or doubled."""
import pytest

import matrix_core
from matrix_core.testing import assert_exactly_once, read_records

from .conftest import lines_in


@pytest.mark.parametrize("sigkill", [False, True], ids=["ray.kill", "SIGKILL"])
def test_killed_hosts_lose_no_task(matrix_ray, tmp_path, killer, sigkill):
    out = tmp_path / "out.jsonl"
    # ~400 tasks/s for 2,000 tasks: long enough for three kills a second apart.
    with killer(kills=3, every_s=1.0, seed=1, after=lines_in(out, 50), sigkill=sigkill) as k:
        summary = matrix_core.run("relay", [
            f"output.path={out}", "run.progress=off", "dataset.size=2000", "run.hosts=2",
            "run.max_concurrent_tasks=100", "agents.b.sleep_ms=250", "run.health_check_s=0.5",
        ])
    records = read_records(out)
    print(f"\n{summary.text()}")  # the chaos numbers, in CI's log with -s or on failure
    assert k.done == 3, "the killer should have killed three hosts while the run was going"
    assert_exactly_once(records, [f"{i}#0" for i in range(2000)])
    assert summary.done == 2000 and summary.failed == 0
    assert summary.resent > 0
    assert all([v[0] for v in r["state"]["visits"]] == ["a", "b", "c"] for r in records)


def test_checkpoints_resume_long_tasks_from_their_last_snapshot(matrix_ray, tmp_path, killer):
    out = tmp_path / "out.jsonl"
    # Each task takes >= 0.4 s (4 laps of a 100 ms step), 30 at a time: ~4 s in all.
    with killer(kills=2, every_s=1.0, seed=2, after=lines_in(out, 10)) as k:
        summary = matrix_core.run("relay", [
            f"output.path={out}", "run.progress=off", "dataset.size=300", "run.hosts=2", "laps=4",
            "run.max_concurrent_tasks=30", "run.checkpoint_every=3", "agents.a.sleep_ms=100", "run.health_check_s=0.5",
        ])
    records = read_records(out)
    print(f"\n{summary.text()}")  # the chaos numbers, in CI's log with -s or on failure
    assert k.done == 2
    assert_exactly_once(records, [f"{i}#0" for i in range(300)])
    assert summary.done == 300 and summary.resent > 0 and summary.resent_from_checkpoint > 0
    # A task restarted from a checkpoint keeps the visits made before it; one restarted from
    # scratch would too, so check the route is whole either way and no step ran twice in a row.
    for r in records:
        assert [v[0] for v in r["state"]["visits"]] == ["a", "b", "c"] * 4
    assert not (tmp_path / "out.jsonl.checkpoints.jsonl").exists(), "finished runs leave no checkpoints behind"


def test_a_killed_sink_is_restarted_and_writes_nothing_twice(matrix_ray, tmp_path, killer):
    out = tmp_path / "out.jsonl"
    with killer(kills=2, every_s=1.0, seed=3, prefix="matrix-sink-", after=lines_in(out, 100)) as k:
        summary = matrix_core.run("relay", [
            f"output.path={out}", "run.progress=off", "dataset.size=2000", "run.hosts=2",
            "run.max_concurrent_tasks=100", "agents.b.sleep_ms=250", "run.health_check_s=0.5",
        ])
    assert k.done == 2
    assert_exactly_once(read_records(out), [f"{i}#0" for i in range(2000)])
    assert summary.done == 2000
