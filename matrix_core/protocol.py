"""The orchestrator message: one task's data and control flow, passed from agent to agent.

A workflow subclasses :class:`Orchestrator` and implements :meth:`Orchestrator.next_role`.
The runtime calls it after every step; ``None`` means the task is finished and goes to the
sink. Large parts (the payload, older history segments) are moved to Ray's object store
before the message crosses a process boundary and travel as references; an agent that
needs them awaits :meth:`Orchestrator.get_payload` / :meth:`Orchestrator.conversation`.
"""
from __future__ import annotations

import asyncio
import time
from enum import Enum
from typing import Any, ClassVar, Mapping

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr


def _rebuild(cls, fields: dict, fields_set: set) -> "BaseModel":
    obj = cls.__new__(cls)
    object.__setattr__(obj, "__dict__", fields)
    object.__setattr__(obj, "__pydantic_fields_set__", fields_set)
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


class _Part(BaseModel):
    """Parts of a message pickle as (class, fields): ~1.7x cheaper than pydantic's default,
    which matters because every cross-process hop pickles the whole history."""

    def __reduce__(self):
        return (_rebuild, (type(self), self.__dict__, self.__pydantic_fields_set__))


class Status(str, Enum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class ToolCall(_Part):
    id: str
    name: str
    arguments: Any = Field(default_factory=dict)


class Usage(_Part):
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Choice(_Part):
    """One of the ``n`` completions a model returned for a call (``Turn.choices``)."""

    content: str | None = None
    reasoning_content: str | None = None
    finish_reason: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    # The server's ``logprobs.content`` as sent: [{token, logprob, bytes, top_logprobs}].
    logprobs: list[dict[str, Any]] | None = None


class Turn(_Part):
    """One message of the conversation, with who produced it and what it cost."""

    role: str
    content: str | None = None
    agent: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    usage: Usage | None = None
    latency_s: float | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    # What else the model returned; None (left out of records) when it did not.
    reasoning_content: str | None = None
    finish_reason: str | None = None
    model: str | None = None  # as the server reported it
    logprobs: list[dict[str, Any]] | None = None  # the first choice's
    choices: list[Choice] | None = None  # every choice, when more than one was asked for (n > 1)
    cached: bool | None = None  # True: answered from the response cache, no call made

    def approx_bytes(self) -> int:
        size = len(self.content or "") + len(self.reasoning_content or "") + 64
        if self.logprobs:
            size += 48 * len(self.logprobs)
        for choice in self.choices or ():
            size += len(choice.content or "") + len(choice.reasoning_content or "") + 48 * len(choice.logprobs or ())
        for call in self.tool_calls:
            size += len(call.name) + len(str(call.arguments))
        return size


class Hop(_Part):
    """Timing of one agent step: time queued at the replica, time in ``step``."""

    role: str
    host: int
    queued_s: float
    step_s: float


class ErrorInfo(_Part):
    type: str
    message: str
    role: str | None = None
    step: int = 0


class TaskState(_Part):
    """Base for a workflow's typed task state, instead of the free ``state`` dict::

        class State(TaskState):
            rounds: int = 2
            answers: int = 0

        class Flow(Orchestrator):
            state: State = Field(default_factory=State)

    It pickles as cheaply as the other parts of the message; records hold it as a dict.
    """


class Offloaded(BaseModel):
    """A value moved to Ray's object store; ``ref`` is a ``ray.ObjectRef``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    ref: Any
    nbytes: int


def task_id_for(row_key: str, trial: int) -> str:
    """Stable task id: the key for exactly-once output and resume."""
    return f"{row_key}#{trial}"


class Orchestrator(BaseModel):
    """Base orchestrator. A workflow implements :meth:`next_role` and :meth:`map_row`; it
    keeps per-task data in ``state`` (a dict, or a :class:`TaskState` model it declares)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    task_id: str
    row_key: str
    trial: int = 0
    payload: Any = None
    history: list[Turn] = Field(default_factory=list)
    history_segments: list[Offloaded] = Field(default_factory=list)
    state: dict[str, Any] = Field(default_factory=dict)
    status: Status = Status.RUNNING
    error: ErrorInfo | None = None
    steps: int = 0
    current_role: str | None = None
    hops: list[Hop] = Field(default_factory=list)
    created_at: float = Field(default_factory=time.time)

    # Resolved copies of offloaded parts: kept for in-process hops, never serialized.
    _payload_cache: Any = PrivateAttr(default=None)
    _segments_cache: list[Turn] | None = PrivateAttr(default=None)

    record_hops: ClassVar[bool] = True

    # --- workflow hooks -------------------------------------------------------------
    @classmethod
    def from_row(cls, row: Mapping[str, Any], *, row_key: str, trial: int, config: Mapping[str, Any]):
        """Build the task for one dataset row: ids from the driver, the rest from :meth:`map_row`."""
        return cls(task_id=task_id_for(row_key, trial), row_key=row_key, trial=trial, **cls.map_row(row, config))

    @classmethod
    def map_row(cls, row: Mapping[str, Any], config: Mapping[str, Any]) -> Mapping[str, Any]:
        """The task's own fields for one row (``payload``, ``state``, ...); the row as payload
        by default. Raise ``ValueError`` for a row the workflow cannot use: it is recorded
        as a failed task and the run goes on."""
        return {"payload": dict(row)}

    def next_role(self) -> str | None:
        """The role that acts next, or ``None`` when the task is finished."""
        raise NotImplementedError(f"{type(self).__name__} must implement next_role()")

    # --- status ---------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.status is not Status.RUNNING

    def fail(self, exc: BaseException | str, role: str | None = None) -> None:
        if isinstance(exc, BaseException):
            err = ErrorInfo(type=type(exc).__name__, message=str(exc) or repr(exc), role=role, step=self.steps)
        else:
            err = ErrorInfo(type="TaskError", message=exc, role=role, step=self.steps)
        self.status, self.error = Status.FAILED, err

    # --- history --------------------------------------------------------------------
    def add_turn(self, turn: Turn | None = None, **fields: Any) -> Turn:
        turn = turn if turn is not None else Turn(**fields)
        self.history.append(turn)
        return turn

    async def conversation(self) -> list[Turn]:
        """The whole history, fetching offloaded segments from the object store once."""
        if not self.history_segments:
            return list(self.history)
        if self._segments_cache is None:
            parts = await asyncio.gather(*(seg.ref for seg in self.history_segments))
            self._segments_cache = [turn for part in parts for turn in part]
        return self._segments_cache + self.history

    async def get_payload(self) -> Any:
        if not isinstance(self.payload, Offloaded):
            return self.payload
        if self._payload_cache is None:
            self._payload_cache = await self.payload.ref
        return self._payload_cache

    def offload(self, threshold_bytes: int, payload_bytes: int | None = None) -> None:
        """Move the inline history (and a large payload) to the object store.

        Called by the runtime before the message leaves the process. Older segments stay
        where they are, so a growing conversation costs one ``put`` per threshold crossed,
        not a copy of the whole history per hop.
        """
        import ray

        if threshold_bytes <= 0:
            return
        if payload_bytes is not None and payload_bytes > threshold_bytes and not isinstance(self.payload, Offloaded):
            self._payload_cache = self.payload
            self.payload = Offloaded(ref=ray.put(self.payload), nbytes=payload_bytes)
        inline = sum(t.approx_bytes() for t in self.history)
        if inline > threshold_bytes:
            turns = list(self.history)
            if self._segments_cache is not None:
                self._segments_cache.extend(turns)
            self.history_segments.append(Offloaded(ref=ray.put(turns), nbytes=inline))
            self.history = []

    async def to_record(self) -> dict[str, Any]:
        """The finished task as a plain dict (offloaded parts resolved), for sinks."""
        record = self.model_dump(mode="json", exclude={"history_segments", "payload", "history"})
        record["payload"] = _jsonable(await self.get_payload())
        record["history"] = [t.model_dump(mode="json", exclude_defaults=True) for t in await self.conversation()]
        return record

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        private = state.get("__pydantic_private__")
        if private:
            state["__pydantic_private__"] = {**private, "_payload_cache": None, "_segments_cache": None}
        return state


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value
