"""The peer-to-peer runtime: agent hosts forward orchestrators to each other directly.

An ``AgentHost`` is a Ray async actor that hosts replicas of one or more roles. A replica
runs at most ``max_in_flight`` steps at once. After a step the host routes the task itself:
to a replica in the same process when one has room (no serialization, no Ray call), else
to the least-loaded replica anywhere, through an :class:`Outbox` that coalesces every
message bound for one peer into one Ray call while earlier calls are still in flight
(Nagle-style: no added latency when idle, large batches under load).
"""
from __future__ import annotations

import asyncio
import os
import logging
import time
import uuid
from collections import defaultdict
from typing import Any, Callable

import ray

from ..agent import AgentContext
from ..protocol import Hop, Orchestrator, Status
from . import metrics as prom
from .checkpoints import snapshot
from .llm_cache import cache_from_config
from .messages import Delivery, Directory, LoadReport
from .plan import RunPlan
from .resources import HostLLMs
from .routing import Router

log = logging.getLogger("matrix.runtime")


class Outbox:
    """Coalesces messages for one peer; at most ``max_outstanding`` calls in flight."""

    def __init__(self, send: Callable[[list], Any], on_reply: Callable[[Any], None], on_error: Callable[[list, BaseException], None], max_batch: int, max_outstanding: int):
        self._send = send
        self._on_reply = on_reply
        self._on_error = on_error
        self._max_batch = max_batch
        self._max_outstanding = max_outstanding
        self._buffer: list = []
        self._sending: list[list] = []  # batches not yet acknowledged: still ours to account for
        self._outstanding = 0
        self._scheduled = False
        self._idle = asyncio.Event()
        self._idle.set()

    def add(self, item: Any) -> None:
        self._buffer.append(item)
        self._idle.clear()
        if not self._scheduled:
            # Flush after the current loop tick: everything routed in this tick shares a call.
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        while self._buffer and self._outstanding < self._max_outstanding:
            batch, self._buffer = self._buffer[: self._max_batch], self._buffer[self._max_batch :]
            self._outstanding += 1
            asyncio.ensure_future(self._deliver(batch))

    def items(self):
        yield from self._buffer
        for batch in self._sending:
            yield from batch

    async def _deliver(self, batch: list) -> None:
        self._sending.append(batch)
        try:
            reply = await self._send(batch)
        except BaseException as exc:  # noqa: BLE001 - peer death must not kill the sender
            self._on_error(batch, exc)
        else:
            self._on_reply(reply)
        finally:
            self._sending.remove(batch)
            self._outstanding -= 1
            self._flush()
            if not self._buffer and not self._outstanding:
                self._idle.set()

    async def drain(self) -> None:
        await self._idle.wait()


class Replica:
    def __init__(self, host: "AgentHostImpl", role: str, index: int, agent, max_in_flight: int):
        self.host, self.role, self.index, self.agent = host, role, index, agent
        self.max_in_flight = max_in_flight
        self.queue: asyncio.Queue = asyncio.Queue()
        self.active = 0
        self.peak_active = 0
        self.steps = 0
        self.running: dict[int, Orchestrator] = {}
        # Workers start on demand, up to max_in_flight: a replica allowed 50,000 steps at once
        # must not hold 50,000 idle coroutines from the start.
        self._workers: list[asyncio.Task] = []
        self._waiting: set[asyncio.Task] = set()  # workers blocked on the queue

    @property
    def load(self) -> int:
        return self.queue.qsize() + self.active

    def put(self, orch: Orchestrator) -> None:
        self.queue.put_nowait((time.perf_counter(), orch))
        self.host.metrics.task_in(self.role)
        if self.queue.qsize() > len(self._waiting) and len(self._workers) < self.max_in_flight:
            self._workers.append(asyncio.ensure_future(self._work()))

    async def _work(self) -> None:
        me = asyncio.current_task()
        while True:
            self._waiting.add(me)
            try:
                item = await self.queue.get()
            finally:
                self._waiting.discard(me)
            if item is None:  # stop(): one per worker, cheaper than cancelling each waiting get
                return
            enqueued, orch = item
            self.active += 1
            self.peak_active = max(self.peak_active, self.active)
            self.running[id(orch)] = orch
            try:
                await self.host.process(self, orch, enqueued)
            except Exception:  # a runtime bug must not stop the worker loop
                log.exception("internal error while processing task %s", getattr(orch, "task_id", "?"))
            finally:
                self.active -= 1
                self.running.pop(id(orch), None)

    def task_ids(self):
        for _, orch in self.queue._queue:  # asyncio.Queue keeps its items in a deque
            yield orch.task_id
        for orch in self.running.values():
            yield orch.task_id

    def stop(self) -> None:
        # Cancelling a waiting Queue.get removes it from the queue's getters: O(workers) each,
        # minutes for tens of thousands. A None per waiting worker ends it in O(1).
        for w in self._workers:
            if w in self._waiting:
                self.queue.put_nowait(None)
            else:
                w.cancel()


class AgentHostImpl:
    """Everything an agent host does; wrapped as a Ray actor by :data:`AgentHost`."""

    def __init__(self, index: int, plan: RunPlan, placement: list[tuple[str, int]], directory: Directory):
        self.index = index
        self.plan = plan
        self.placement = placement
        self.directory = directory
        self.router = Router(directory.replicas, here=index)
        self.replicas: dict[str, list[Replica]] = defaultdict(list)
        self.outboxes: dict[int, Outbox] = {}
        self.sink_box: Outbox | None = None
        self.checkpoint_box: Outbox | None = None
        self.llm = None
        self.lost_sends = 0
        # A restarted actor gets a new incarnation: the driver then re-sends what it lost.
        self.incarnation = uuid.uuid4().hex
        self._started: asyncio.Task | None = None

    async def start(self) -> str:
        """Creates the agents (once; every entry point calls it, so a restarted host rebuilds)."""
        if self._started is None:
            self._started = asyncio.ensure_future(self._start())
        await self._started
        return self.incarnation

    async def _start(self) -> None:
        self.metrics = prom.HostStats(self.directory.run_id, self.plan.workflow, self.replicas).start()
        self.sink = ray.get_actor(self.directory.sink)
        cache = cache_from_config(self.plan.run_config.get("cache"))
        self.llm = HostLLMs(self.plan.llm_resources, [r for r, _ in self.placement], cache=cache)
        for role_name, replica_index in self.placement:
            role = self.plan.roles[role_name]
            llm, llms = self.llm.for_role(role_name)
            ctx = AgentContext(
                role=role_name,
                config=role.options,
                host=self.index,
                replica=replica_index,
                llm=llm,
                llms=llms,
                run_config=self.plan.run_config,
            )
            agent = role.agent_cls(ctx)
            await agent.setup()
            self.replicas[role_name].append(Replica(self, role_name, replica_index, agent, role.max_in_flight))
        self.sink_box = self._box(lambda batch: self.sink.write.remote(batch), lambda _: None, self._sink_failed)
        self.checkpoint_box = self._box(lambda batch: self.sink.checkpoint.remote(batch), lambda _: None, self._sink_failed)

    def _box(self, send, on_reply, on_error) -> Outbox:
        return Outbox(send=send, on_reply=on_reply, on_error=on_error, max_batch=self.plan.batch_max, max_outstanding=self.plan.outstanding_per_peer)

    # --- receiving ------------------------------------------------------------------
    def loads(self) -> dict[str, dict[int, int]]:
        return {role: {r.index: r.load for r in reps} for role, reps in self.replicas.items()}

    async def deliver(self, batch: list[Delivery]) -> LoadReport:
        await self.start()
        for role, replica_index, orch in batch:
            self._local(role, replica_index).put(orch)
        return LoadReport(self.index, self.loads())

    def _local(self, role: str, replica_index: int) -> Replica:
        for rep in self.replicas[role]:
            if rep.index == replica_index:
                return rep
        raise KeyError(f"host {self.index} has no replica {replica_index} of {role!r}")

    # --- one hop --------------------------------------------------------------------
    async def process(self, replica: Replica, orch: Orchestrator, enqueued: float) -> None:
        started = time.perf_counter()
        orch.current_role = replica.role
        turns_before = len(orch.history)
        plan = self.plan
        try:
            remaining = None
            if plan.task_timeout_s is not None:
                remaining = plan.task_timeout_s - (time.time() - orch.created_at)
                if remaining <= 0:
                    raise TimeoutError(f"task exceeded run.task_timeout_s={plan.task_timeout_s:g}")
            step = replica.agent.step(orch)
            result = await (asyncio.wait_for(step, remaining) if remaining is not None else step)
            if isinstance(result, Orchestrator):
                orch = result
            orch.steps += 1
            next_role = None if orch.done else orch.next_role()
        except asyncio.TimeoutError:
            orch.steps += 1
            orch.fail(f"task exceeded run.task_timeout_s={plan.task_timeout_s:g}", replica.role)
            next_role = None
        except Exception as exc:  # the agent's failure fails the task, not the run
            orch.steps += 1
            orch.fail(exc, replica.role)
            next_role = None
        replica.steps += 1
        self.metrics.step(replica.role, time.perf_counter() - started, turns_before, orch)
        if type(orch).record_hops:
            orch.hops.append(Hop(role=replica.role, host=self.index, queued_s=started - enqueued, step_s=time.perf_counter() - started))
        if next_role is not None and orch.steps >= plan.max_steps:
            orch.fail(f"task reached run.max_steps={plan.max_steps}", replica.role)
            next_role = None
        if next_role is None:
            if orch.status is Status.RUNNING:
                orch.status = Status.DONE
            self.finish(orch)
        else:
            if plan.checkpoint_every and orch.steps % plan.checkpoint_every == 0:
                self.checkpoint_box.add(snapshot(orch))  # the task moves on
            self.route(next_role, orch)

    def route(self, role: str, orch: Orchestrator) -> None:
        target = self.router.pick(role, self.replicas.get(role, ()))
        if target is None:
            orch.fail(f"next role {role!r} has no agent; configured roles: {self.router.role_names()}")
            self.finish(orch)
        elif target.host == self.index:
            self._local(role, target.index).put(orch)
        else:
            self.send(target.host, Delivery(role, target.index, orch))

    def send(self, host: int, delivery: Delivery) -> None:
        delivery.orch.offload(self.plan.offload_threshold_bytes)
        self._outbox(host).add(delivery)

    def _outbox(self, host: int) -> Outbox:
        box = self.outboxes.get(host)
        if box is None:
            peer = ray.get_actor(self.directory.hosts[host])
            box = self.outboxes[host] = self._box(lambda batch: peer.deliver.remote(batch), self.router.update, self._peer_failed)
        return box

    def finish(self, orch: Orchestrator) -> None:
        orch.offload(self.plan.offload_threshold_bytes)
        self.sink_box.add(orch)

    def _peer_failed(self, batch: list, exc: BaseException) -> None:
        self.lost_sends += len(batch)
        log.error("host %d: %d task(s) could not be delivered to a peer: %s", self.index, len(batch), exc)

    def _sink_failed(self, batch: list, exc: BaseException) -> None:
        self.lost_sends += len(batch)
        log.error("host %d: %d finished task(s) could not reach the sink: %s", self.index, len(batch), exc)

    async def drain(self) -> None:
        for box in [*self.outboxes.values(), self.sink_box, self.checkpoint_box]:
            if box is not None:
                await box.drain()

    async def ping(self) -> str:
        return await self.start()

    async def held_ids(self) -> tuple[str, list[str]]:
        """Task ids this host is responsible for: queued, running, or sent but not acknowledged."""
        await self.start()
        ids = [tid for reps in self.replicas.values() for rep in reps for tid in rep.task_ids()]
        for box in [*self.outboxes.values(), self.sink_box, ]:
            ids.extend(item.orch.task_id if isinstance(item, Delivery) else item.task_id for item in box.items())
        return self.incarnation, ids

    async def stats(self) -> dict[str, Any]:
        await self.start()
        return {
            "host": self.index,
            "pid": os.getpid(),
            "replicas": {
                role: [{"index": r.index, "steps": r.steps, "peak_active": r.peak_active, "max_in_flight": r.max_in_flight, "load": r.load} for r in reps]
                for role, reps in self.replicas.items()
            },
            "lost_sends": self.lost_sends,
            "llm": self.llm.report() if self.llm is not None else [],
            "llm_cache": self.llm.cache.stats() if self.llm is not None and self.llm.cache is not None else None,
        }

    async def live_stats(self) -> dict[str, dict[str, Any]]:
        """Per-role counts, queue and in-flight now: the driver's live view polls this."""
        await self.start()
        return self.metrics.snapshot()

    async def close(self) -> None:
        self.metrics.stop()
        for reps in self.replicas.values():
            for rep in reps:
                rep.stop()
                await rep.agent.close()
        if self.llm is not None:
            await self.llm.aclose()


# Restarted by Ray when its process dies; calls in flight are retried on the new incarnation
# (at-least-once: the sink drops duplicates by task id).
AgentHost = ray.remote(max_restarts=-1, max_task_retries=-1)(AgentHostImpl)
