"""Dataset rows become orchestrators, lazily; unreadable rows become failed tasks."""
from __future__ import annotations

import logging
import time
from typing import Any, Iterator, Mapping

from ..options import MatrixConfig
from ..protocol import Orchestrator, Status, task_id_for

log = logging.getLogger("matrix.driver")


class Tasks:
    """Turns dataset rows into orchestrators, lazily; unreadable rows become failed tasks."""

    def __init__(self, rows: Iterator[tuple[int, Any]], orchestrator_cls: type[Orchestrator], conf: MatrixConfig, skip: Mapping[str, str],
                 resume: Mapping[str, Mapping[str, Any]] | None = None):
        self.rows = rows
        self.cls = orchestrator_cls
        self.cfg = conf.raw
        self.dataset = conf.dataset
        self.id_field = conf.dataset.id_field
        self.trials = conf.run.trials
        self.limit = conf.dataset.limit
        self.skip = skip
        self.retry_failed = conf.resume.retry_failed
        self.resume = dict(resume or {})  # task id -> the checkpoint an earlier run left (sink_actor)
        self.resumed = 0
        self.skipped = 0
        self.skipped_failed = 0  # failed in an earlier run, not retried (resume.retry_failed=false)
        self.rows_read = 0
        self.bad_rows = 0
        self.duplicate_rows = 0
        self._seen: dict[str, int] = {}

    def __iter__(self) -> Iterator[Orchestrator]:
        for row_number, row in self.rows:
            if self.limit is not None and self.rows_read >= self.limit:
                return
            self.rows_read += 1
            where = f"{self.dataset.path or self.dataset.loader} row {row_number}"
            key = str(row.get(self.id_field)) if isinstance(row, Mapping) and self.id_field and row.get(self.id_field) is not None else str(row_number)
            first = self._seen.setdefault(key, row_number)
            if first != row_number:
                self.duplicate_rows += 1
                log.error("%s: duplicate %s %r (first at row %d): skipped", where, self.id_field, key, first)
                continue
            for trial in range(self.trials):
                task_id = task_id_for(key, trial)
                previous = self.skip.get(task_id)
                if previous == Status.DONE.value or (previous is not None and not self.retry_failed):
                    self.skipped += 1
                    self.skipped_failed += previous != Status.DONE.value
                    continue
                if task_id in self.resume:
                    resumed = self._from_checkpoint(self.resume.pop(task_id), where)
                    if resumed is not None:
                        yield resumed
                        continue
                if isinstance(row, Exception):
                    self.bad_rows += 1
                    log.error("%s: %s (written as a failed task, run goes on)", where, row)
                    yield self._failed(task_id, key, trial, row, where)
                    continue
                try:
                    yield self.cls.from_row(row, row_key=key, trial=trial, config=self.cfg)
                except Exception as exc:  # a row the workflow cannot use: same treatment
                    self.bad_rows += 1
                    log.error("%s: %s: %s (written as a failed task, run goes on)", where, type(exc).__name__, exc)
                    yield self._failed(task_id, key, trial, exc, where)

    def _from_checkpoint(self, entry: Mapping[str, Any], where: str) -> Orchestrator | None:
        try:
            orch = self.cls.model_validate(entry["state"])
        except Exception as exc:  # e.g. the workflow's state changed shape since: start afresh
            log.warning("%s: checkpoint of task %s unusable (%s); it starts from its first step", where, entry.get("task_id"), exc)
            return None
        # The time the task had before the checkpoint counts against run.task_timeout_s; the
        # time no run was alive does not.
        orch.created_at += max(0.0, time.time() - float(entry.get("at") or time.time()))
        self.resumed += 1
        return orch

    def _failed(self, task_id: str, key: str, trial: int, exc: Exception, where: str) -> Orchestrator:
        orch = Orchestrator.model_construct(
            task_id=task_id, row_key=key, trial=trial, payload=None, history=[], history_segments=[],
            state={"dataset_row": where}, status=Status.RUNNING, error=None, steps=0, current_role=None,
            hops=[], created_at=time.time(),
        )
        orch.fail(exc, role="dataset")
        return orch
