"""The sink actor: the terminal role. Writes each task id once and returns credits.

It is restarted by Ray if its process dies; on restart it re-reads the output (the file is
the truth) so nothing already written is written again. It also keeps the latest
checkpoint of each running task (``run.checkpoint_every``), in memory and in a sidecar
file next to the output, so a task lost with an agent, or with the whole run, restarts from
its last checkpoint rather than from its first step.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any, Mapping

import ray
from filelock import FileLock, Timeout

from ..errors import MatrixError
from ..protocol import Orchestrator, Status
from . import metrics as prom
from .messages import Completion

log = logging.getLogger("matrix.sink")


class SinkActorImpl:
    def __init__(self, sink_cls: type, config: Mapping[str, Any], metrics=None, retry_failed: bool = False,
                 owner: Mapping[str, Any] | None = None, force: bool = False):
        self.sink = sink_cls(config)
        self.owner = dict(owner or {})
        self.force = force
        self.metrics = metrics
        self.retry_failed = retry_failed
        self.written: dict[str, str] = {}  # durable: flushed to the output
        self.writing: set[str] = set()  # being written now: a second copy is a duplicate too
        self.pending: list[Completion] = []
        self.event = asyncio.Event()
        self.duplicates = 0
        self.checkpoints: dict[str, dict[str, Any]] = {}
        self._opened: dict[str, str] | None = None
        self._lock: FileLock | None = None
        self._ckpt_file = None
        self.incarnation = uuid.uuid4().hex
        self.broken: MatrixError | None = None  # an I/O error: the driver's next poll ends the run with it
        prom.bind_from_actor_name(self.owner.get("workflow", ""))

    def _sidecar(self, suffix: str) -> Path | None:
        location = self.sink.location
        return Path(location + suffix) if location else None

    async def open(self) -> dict[str, str]:
        """Opens the output (once per incarnation); returns what earlier runs wrote."""
        if self._opened is None:
            self._opened = self._open()
        return self._opened

    def _open(self) -> dict[str, str]:
        lock_path = self._sidecar(".lock")
        if lock_path is not None:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = FileLock(lock_path)
            try:
                self._lock.acquire(timeout=0)
            except Timeout:
                raise MatrixError(f"{self.sink.location} is being written by another run; wait for it or stop it") from None
        self._check_owner()
        existing = self.sink.existing_ids()
        finished = set(existing)  # a failed task redone by retry_failed starts afresh, not from a snapshot
        if self.retry_failed:
            failed = {k for k, v in existing.items() if v != Status.DONE.value}
            if failed:
                self.sink.remove(failed)
                existing = {k: v for k, v in existing.items() if k not in failed}
        self.written.update(existing)
        self._load_checkpoints(finished)
        self.sink.open()
        return existing

    def _check_owner(self) -> None:
        """An output belongs to one workflow and dataset: resuming someone else's would mix data."""
        path = self._sidecar(".meta.json")
        if path is None or not self.owner:
            return
        if path.exists() and not self.force:
            previous = json.loads(path.read_text())
            differs = sorted(k for k in set(previous) | set(self.owner) if previous.get(k) != self.owner.get(k))
            if differs:
                detail = ", ".join(f"{k}: {previous.get(k)!r} there, {self.owner.get(k)!r} now" for k in differs)
                raise MatrixError(f"{self.sink.location} was written by a different run ({detail}); use another output.path, or --force to append anyway")
        path.write_text(json.dumps(self.owner, indent=1))

    def _load_checkpoints(self, finished: set[str]) -> None:
        path = self._sidecar(".checkpoints.jsonl")
        if path is None:
            return
        if path.exists():
            with path.open("rb") as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        continue  # a torn last line from a crash
                    if entry["task_id"] not in finished:
                        self.checkpoints[entry["task_id"]] = entry
            # Keep only the newest snapshot of each unfinished task: the file stays bounded
            # however often the run is restarted.
            compacted = path.with_name(path.name + ".tmp")
            with compacted.open("w") as f:
                f.writelines(json.dumps(e, default=str) + "\n" for e in self.checkpoints.values())
            os.replace(compacted, path)
        self._ckpt_file = path.open("a")

    async def write(self, batch: list[Orchestrator]) -> int:
        await self.open()
        records, completions = [], []
        batch_ids = []
        for orch in batch:
            if orch.task_id in self.written or orch.task_id in self.writing:
                self.duplicates += 1
                continue
            self.writing.add(orch.task_id)
            try:
                record = await orch.to_record()
            except Exception as exc:  # noqa: BLE001 - a task that cannot become a record is still written, as failed
                record = _unwritable(orch, exc, "could not be turned into a record")
            batch_ids.append((orch.task_id, record.get("status", orch.status.value)))
            records.append(record)
            if self.metrics is not None:
                self.metrics.add(record)
            tokens = sum((t.get("usage") or {}).get("prompt_tokens", 0) + (t.get("usage") or {}).get("completion_tokens", 0) for t in record["history"])
            completions.append(Completion(orch.task_id, record.get("status", orch.status.value), orch.steps, tokens))
            self.checkpoints.pop(orch.task_id, None)
        if records:
            try:
                records = self._write(records, batch)
            except OSError as exc:  # the disk, not the data: re-sending would fail forever
                self.broken = MatrixError(f"cannot write to {self.sink.location}: {exc.strerror or exc}")
                raise
            finally:
                self.writing.difference_update(t for t, _ in batch_ids)
            status = {r["task_id"]: r.get("status", Status.DONE.value) for r in records}  # some became failed records
            completions = [c if status[c.task_id] == c.status else Completion(c.task_id, status[c.task_id], c.steps, c.tokens) for c in completions]
            self.written.update(status)
            prom.written(records)
            self.pending.extend(completions)
            self.event.set()
        return len(records)

    def _write(self, records: list[dict[str, Any]], batch: list[Orchestrator]) -> list[dict[str, Any]]:
        """Writes the batch; if the sink refuses it, each record alone, and a record it cannot
        write (nested too deep, not encodable) as a failed task saying why. Re-sending such a
        task would fail the same way forever. I/O errors still raise: the driver bounds them."""
        try:
            self.sink.write(records)
            self.sink.flush()
            return records
        except OSError:
            raise
        except Exception:  # noqa: BLE001 - found out record by record below
            pass
        orchs = {o.task_id: o for o in batch}
        written = []
        for record in records:
            try:
                self.sink.write([record])
                self.sink.flush()
            except OSError:
                raise
            except Exception as exc:  # noqa: BLE001
                record = _unwritable(orchs[record["task_id"]], exc, f"could not be written by {type(self.sink).__name__}")
                log.error("task %s: %s", record["task_id"], record["error"]["message"])
                self.sink.write([record])
                self.sink.flush()
            written.append(record)
        return written

    async def checkpoint(self, batch: list[Orchestrator]) -> None:
        """Keeps the newest snapshot per task, materialised (no object-store references)."""
        await self.open()
        for orch in batch:
            if orch.task_id in self.written:
                continue
            previous = self.checkpoints.get(orch.task_id)
            if previous is not None and previous["steps"] >= orch.steps:
                continue
            entry = {"task_id": orch.task_id, "steps": orch.steps, "at": time.time(), "state": await orch.to_record()}
            self.checkpoints[orch.task_id] = entry
            if self._ckpt_file is not None:
                self._ckpt_file.write(json.dumps(entry, default=str) + "\n")
        if self._ckpt_file is not None:
            self._ckpt_file.flush()

    async def recover(self, task_ids: list[str]) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
        """For tasks the driver still waits on: those already written (with status), and the
        checkpoints of the others."""
        await self.open()
        written = {t: self.written[t] for t in task_ids if t in self.written}
        checkpoints = {t: self.checkpoints[t]["state"] for t in task_ids if t in self.checkpoints and t not in written}
        return written, checkpoints

    async def resume_points(self) -> dict[str, dict[str, Any]]:
        """The newest checkpoint of every task an earlier run left unfinished: a new run
        continues those tasks from there instead of from their first step."""
        await self.open()
        return {t: e for t, e in self.checkpoints.items() if t not in self.written}

    async def poll(self, timeout_s: float) -> list[Completion]:
        """Completions since the last poll; waits up to ``timeout_s`` for the first one."""
        await self.open()
        if self.broken is not None:
            raise self.broken
        if not self.pending:
            self.event.clear()
            try:
                await asyncio.wait_for(self.event.wait(), timeout_s)
            except asyncio.TimeoutError:
                pass
        out, self.pending = self.pending, []
        return out

    async def ping(self) -> str:
        await self.open()
        return self.incarnation

    async def close(self) -> dict[str, Any]:
        await self.open()
        self.sink.close()
        if self._ckpt_file is not None:
            self._ckpt_file.close()
            path = self._sidecar(".checkpoints.jsonl")
            if not self.checkpoints and path is not None:
                path.unlink(missing_ok=True)  # every task finished: nothing to resume from
        if self._lock is not None:
            self._sidecar(".lock").unlink(missing_ok=True)
            self._lock.release()
        return {
            "written": len(self.written),
            "duplicates_dropped": self.duplicates,
            "location": self.sink.location,
            "metrics": self.metrics.result() if self.metrics is not None else {},
        }


def _unwritable(orch: Orchestrator, exc: Exception, what: str) -> dict[str, Any]:
    """The smallest record of a task whose own record cannot be written: failed, with why."""
    reason = f"{type(exc).__name__}: {exc}".encode("utf-8", "replace").decode()[:500]
    return {
        "task_id": orch.task_id, "row_key": orch.row_key, "trial": orch.trial, "status": Status.FAILED.value,
        "error": {"type": "UnwritableRecord", "message": f"the task's record {what} ({reason})", "role": "sink", "step": orch.steps},
        "steps": orch.steps, "payload": None, "history": [], "state": {},
    }


SinkActor = ray.remote(max_restarts=-1, max_task_retries=-1)(SinkActorImpl)
