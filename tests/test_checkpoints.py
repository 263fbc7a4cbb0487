"""A checkpoint is a snapshot: steps the task makes after it never leak into it."""
import threading

from matrix_core._private.checkpoints import snapshot
from matrix_core.protocol import Orchestrator


def test_a_snapshot_does_not_change_when_the_task_moves_on():
    live = Orchestrator(task_id="1#0", row_key="1", state={"visits": [["a", 1]], "lock": threading.Lock()}, payload={"row": 1})
    live.add_turn(role="user", content="hi")
    snap = snapshot(live)
    live.state["visits"].append(["b", 2])
    live.history[0].meta["x"] = 1
    live.add_turn(role="assistant", content="next")
    live.steps += 1
    assert snap.state["visits"] == [["a", 1]] and snap.steps == 0
    assert len(snap.history) == 1 and snap.history[0].meta == {}
    assert snap.state["lock"] is live.state["lock"]  # what cannot be copied is shared, the rest still copied
    assert snap.payload is live.payload  # the row as read: never changed, not copied
