"""The sink actor: the terminal role. Writes each task id once and returns credits."""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Mapping

import ray

from ..protocol import Orchestrator, Status

log = logging.getLogger("matrix.sink")


class SinkActorImpl:
    def __init__(self, sink_cls: type, config: Mapping[str, Any], metrics=None):
        self.sink = sink_cls(config)
        self.metrics = metrics
        self.written: dict[str, str] = {}
        self.pending: list[tuple[str, str, int, int]] = []
        self.event = asyncio.Event()
        self.duplicates = 0

    async def open(self) -> dict[str, str]:
        """Opens the output; returns the ids (and status) an earlier run already wrote."""
        existing = self.sink.existing_ids()
        self.written.update(existing)
        self.sink.open()
        return existing

    async def write(self, batch: list[Orchestrator]) -> int:
        records = []
        completions = []
        for orch in batch:
            if orch.task_id in self.written:
                self.duplicates += 1
                continue
            record = await orch.to_record()
            records.append(record)
            if self.metrics is not None:
                self.metrics.add(record)
            tokens = sum((t.get("usage") or {}).get("prompt_tokens", 0) + (t.get("usage") or {}).get("completion_tokens", 0) for t in record["history"])
            completions.append((orch.task_id, orch.status.value, orch.steps, tokens))
        if records:
            self.sink.write(records)
            self.sink.flush()
            for task_id, status, _, _ in completions:
                self.written[task_id] = status
            self.pending.extend(completions)
            self.event.set()
        return len(records)

    async def poll(self, timeout_s: float) -> list[tuple[str, str, int, int]]:
        """Completions since the last poll; waits up to ``timeout_s`` for the first one."""
        if not self.pending:
            self.event.clear()
            try:
                await asyncio.wait_for(self.event.wait(), timeout_s)
            except asyncio.TimeoutError:
                pass
        out, self.pending = self.pending, []
        return out

    async def ping(self) -> bool:
        return True

    async def close(self) -> dict[str, Any]:
        self.sink.close()
        return {
            "written": len(self.written),
            "duplicates_dropped": self.duplicates,
            "location": self.sink.location,
            "metrics": self.metrics.result() if self.metrics is not None else {},
        }


SinkActor = ray.remote(SinkActorImpl)
