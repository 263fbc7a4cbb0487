import asyncio
import pickle

import pytest

from pydantic import Field, ValidationError

from matrix_core import Hop, Offloaded, Orchestrator, Status, TaskState, Turn, task_id_for


class DialogueState(TaskState):
    rounds: int = Field(2, ge=1)
    answers: int = 0


class DialogueOrchestrator(Orchestrator):
    """Two roles alternate until ``rounds`` answers: a workflow with typed state."""

    state: DialogueState = Field(default_factory=DialogueState)

    @classmethod
    def map_row(cls, row, config):
        return {"payload": {"topic": row["topic"]}, "state": {"rounds": config["rounds"]}}

    def next_role(self):
        if self.state.answers >= self.state.rounds:
            return None
        return "answerer" if self.history and self.history[-1].agent == "questioner" else "questioner"


def make(**kw):
    return DialogueOrchestrator.from_row({"topic": "tides"}, row_key="tides", trial=1, config={"rounds": 2, **kw})


def test_from_row_fills_ids_and_the_workflow_maps_only_its_row():
    orch = make(rounds=3)
    assert (orch.task_id, orch.row_key, orch.trial) == ("tides#1", "tides", 1)
    assert orch.payload == {"topic": "tides"} and orch.state == DialogueState(rounds=3)
    with pytest.raises(ValidationError, match="rounds"):
        make(rounds=0)


def test_the_default_maps_the_row_to_the_payload_and_state_stays_a_dict():
    orch = Orchestrator.from_row({"a": 1}, row_key="r", trial=0, config={})
    assert orch.payload == {"a": 1} and orch.state == {} and orch.task_id == "r#0"


def test_typed_state_round_trips_and_is_a_dict_in_records():
    orch = make()
    orch.state.answers = 1
    clone = pickle.loads(pickle.dumps(orch))
    assert type(clone.state) is DialogueState and clone.state.answers == 1
    assert asyncio.run(orch.to_record())["state"] == {"rounds": 2, "answers": 1}


def test_task_id_is_stable_per_row_and_trial():
    assert make().task_id == task_id_for("tides", 1) == "tides#1"
    assert make().task_id == make().task_id


def test_pickle_round_trip_keeps_every_field():
    orch = make()
    orch.add_turn(role="assistant", content="Why?", agent="questioner", tool_calls=[{"id": "c1", "name": "f", "arguments": {"x": 1}}])
    orch.hops.append(Hop(role="questioner", host=0, queued_s=0.1, step_s=0.2))
    orch.fail(ValueError("boom"), role="answerer")
    clone = pickle.loads(pickle.dumps(orch))
    assert type(clone) is DialogueOrchestrator
    assert clone.model_dump() == orch.model_dump()
    assert clone.status is Status.FAILED and clone.error.type == "ValueError" and clone.error.role == "answerer"


def test_resolved_caches_do_not_travel():
    orch = make()
    orch._payload_cache = {"big": "x" * 1000}
    orch._segments_cache = [Turn(role="user", content="y")]
    clone = pickle.loads(pickle.dumps(orch))
    assert clone._payload_cache is None and clone._segments_cache is None


def test_routing_alternates_and_ends_after_rounds():
    orch = make()
    order = []
    while (role := orch.next_role()) is not None:
        order.append(role)
        orch.add_turn(role="assistant", content="...", agent=role)
        if role == "answerer":
            orch.state.answers += 1
    assert order == ["questioner", "answerer", "questioner", "answerer"]


def test_base_orchestrator_requires_next_role():
    with pytest.raises(NotImplementedError):
        Orchestrator(task_id="a#0", row_key="a").next_role()


def test_offload_moves_history_and_payload_to_object_store(matrix_ray):
    orch = make()
    orch.payload = {"doc": "p" * 5000}
    for i in range(10):
        orch.add_turn(role="user", content=f"{i}" * 500)
    orch.offload(threshold_bytes=2000, payload_bytes=5010)
    assert isinstance(orch.payload, Offloaded) and orch.history == []
    assert len(orch.history_segments) == 1
    wire = pickle.dumps(orch)
    assert len(wire) < 2000  # only references travel
    orch.add_turn(role="user", content="tail")
    clone = pickle.loads(wire)
    clone.add_turn(role="user", content="tail")

    async def read():
        return await clone.get_payload(), await clone.conversation(), await clone.to_record()

    payload, conversation, record = asyncio.run(read())
    assert payload == {"doc": "p" * 5000}
    assert [t.content for t in conversation] == [f"{i}" * 500 for i in range(10)] + ["tail"]
    assert record["payload"] == payload and len(record["history"]) == 11
    assert "history_segments" not in record


def test_small_messages_stay_inline(matrix_ray):
    orch = make()
    orch.add_turn(role="user", content="short")
    orch.offload(threshold_bytes=65536, payload_bytes=20)
    assert orch.history_segments == [] and not isinstance(orch.payload, Offloaded)
