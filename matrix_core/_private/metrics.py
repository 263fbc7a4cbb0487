"""Prometheus metrics of a run, through Ray's own metrics API (``ray.util.metrics``).

Ray's metrics agent on every node exports them in Prometheus format (names get Ray's
``ray_`` prefix: ``ray_matrix_role_tasks_in_total``). Labels are the run id, the workflow
and a role or LLM resource (plus an error kind or a task status): never a task id, so the
number of series stays bounded whatever the dataset size.

Agent hosts count in plain Python on the hot path (:class:`HostStats`) and push the deltas
to Ray every second; the same numbers answer the driver's live-view poll. LLM, sink and
driver events are rarer and recorded directly.

Every recorder is a no-op outside a Ray worker or driver (unit tests of the LLM client).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("matrix.metrics")

LATENCY_BOUNDARIES = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]
FLUSH_EVERY_S = 1.0
# One Ray observe() costs ~20 us: beyond this many steps per role, host and flush, the step
# histogram gets a uniform sample of them (its quantiles hold; exact counts are the counters).
STEP_SAMPLES_PER_FLUSH = 256
LAG_SAMPLES_PER_BATCH = 16
SERVICE_DISCOVERY_FILE = "prom_metrics_service_discovery.json"  # Ray's name for it

# The run this process works for: every metric carries it (set by hosts, sink, driver).
_run: dict[str, str] = {"run_id": "", "workflow": ""}
_metrics: dict[str, Any] = {}

_DEFS = {
    # name: (kind, description, extra label)
    "matrix_role_tasks_in_total": ("counter", "Tasks received by a role's replicas", "role"),
    "matrix_role_tasks_out_total": ("counter", "Steps a role finished (the task moved on or ended)", "role"),
    "matrix_role_tasks_failed_total": ("counter", "Tasks that failed at a role's step", "role"),
    "matrix_role_turn_tokens_total": ("counter", "Tokens of the turns a role's steps added, counted as each step ends", "role"),
    "matrix_role_queue_depth": ("gauge", "Tasks waiting for a free slot of a role's replicas", "role"),
    "matrix_role_in_flight": ("gauge", "Steps of a role running now", "role"),
    "matrix_role_step_seconds": ("histogram", f"Duration of one agent step (at most {STEP_SAMPLES_PER_FLUSH} sampled per role, host and second)", "role"),
    "matrix_llm_calls_total": ("counter", "LLM calls that returned a completion", "resource"),
    "matrix_llm_errors_total": ("counter", "Failed LLM attempts by kind (429, 5xx, 4xx, timeout, connection, malformed)", "resource"),
    "matrix_llm_retries_total": ("counter", "LLM attempts retried after a failure", "resource"),
    "matrix_llm_latency_seconds": ("histogram", "Latency of one successful LLM call", "resource"),
    "matrix_llm_prompt_tokens_total": ("counter", "Prompt tokens of successful LLM calls", "resource"),
    "matrix_llm_completion_tokens_total": ("counter", "Completion tokens of successful LLM calls", "resource"),
    "matrix_sink_records_written_total": ("counter", "Records the sink wrote, by task status", "status"),
    "matrix_sink_write_lag_seconds": ("histogram", f"From the end of a task's last step to its record being flushed ({LAG_SAMPLES_PER_BATCH} sampled per written batch)", None),
    "matrix_driver_tasks_admitted_total": ("counter", "Tasks the driver admitted under the concurrency cap", None),
    "matrix_driver_tasks_resent_total": ("counter", "Tasks the driver re-sent after an actor lost them", None),
}
METRIC_NAMES = tuple(_DEFS)


def bind_run(run_id: str, workflow: str) -> None:
    """Labels every metric this process records with the run."""
    _run.update(run_id=str(run_id), workflow=str(workflow))


def bind_from_actor_name(workflow: str) -> None:
    """Inside an actor named ``matrix-<kind>-<run id>[-<i>]`` (the driver's naming)."""
    import ray

    name = ray.get_runtime_context().get_actor_name() or ""
    parts = name.split("-")
    if len(parts) >= 3 and parts[0] == "matrix":
        bind_run(parts[2], workflow)


def _enabled() -> bool:
    import ray

    return ray.is_initialized()


def _metric(name: str):
    metric = _metrics.get(name)
    if metric is None:
        from ray.util import metrics as rm

        kind, description, extra = _DEFS[name]
        tag_keys = ("run_id", "workflow") + (("kind",) if name == "matrix_llm_errors_total" else ()) + ((extra,) if extra else ())
        if kind == "counter":
            metric = rm.Counter(name, description, tag_keys=tag_keys)
        elif kind == "gauge":
            metric = rm.Gauge(name, description, tag_keys=tag_keys)
        else:
            metric = rm.Histogram(name, description, boundaries=LATENCY_BOUNDARIES, tag_keys=tag_keys)
        _metrics[name] = metric
    return metric


def record(name: str, value: float = 1.0, **labels: str) -> None:
    """Adds to a counter, sets a gauge or observes a histogram value, with the run's labels."""
    if not _enabled():
        return
    kind = _DEFS[name][0]
    if kind == "counter" and value <= 0:
        return  # Ray refuses non-positive increments
    tags = {**_run, **{k: str(v) for k, v in labels.items()}}
    try:
        metric = _metric(name)
        if kind == "counter":
            metric.inc(value, tags=tags)
        elif kind == "gauge":
            metric.set(value, tags=tags)
        else:
            metric.observe(value, tags=tags)
    except Exception as exc:  # metrics must never break a run
        log.debug("metric %s not recorded: %s", name, exc)


# --- agent hosts --------------------------------------------------------------------


@dataclass
class RoleStats:
    """Cumulative counts of one role on one host, plus what is not yet pushed to Ray."""

    tasks_in: int = 0
    tasks_out: int = 0
    failed: int = 0
    tokens: int = 0
    steps_s: float = 0.0
    queue: int = 0
    in_flight: int = 0
    _pushed: tuple[int, int, int, int] = (0, 0, 0, 0)
    _latencies: list[float] = field(default_factory=list)  # a reservoir sample since the last flush
    _since_flush: int = 0


class HostStats:
    """Per-role counters of one agent host: cheap on the hot path, pushed to Ray every second."""

    def __init__(self, run_id: str, workflow: str, replicas: dict[str, list]):
        bind_run(run_id, workflow)
        self.replicas = replicas  # role -> [Replica]: read for queue depth and in-flight
        self.roles: dict[str, RoleStats] = {}
        self._task: asyncio.Task | None = None

    def _role(self, role: str) -> RoleStats:
        stats = self.roles.get(role)
        if stats is None:
            stats = self.roles[role] = RoleStats()
        return stats

    def task_in(self, role: str) -> None:
        self._role(role).tasks_in += 1

    def step(self, role: str, step_s: float, turns_before: int, orch) -> None:
        """One step ended: ``turns_before`` is the history length when it started."""
        stats = self._role(role)
        stats.tasks_out += 1
        stats.steps_s += step_s
        stats.failed += orch.status.value == "failed"
        for turn in orch.history[turns_before:] if len(orch.history) > turns_before else ():
            if turn.usage is not None:
                stats.tokens += turn.usage.prompt_tokens + turn.usage.completion_tokens
        stats._since_flush += 1
        if len(stats._latencies) < STEP_SAMPLES_PER_FLUSH:
            stats._latencies.append(step_s)
        else:
            slot = random.randrange(stats._since_flush)
            if slot < STEP_SAMPLES_PER_FLUSH:
                stats._latencies[slot] = step_s

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """What the driver's live view polls: cumulative counts, queue and in-flight now."""
        self._refresh_loads()
        return {
            role: {"in": s.tasks_in, "out": s.tasks_out, "failed": s.failed, "tokens": s.tokens,
                   "step_s": s.steps_s, "queue": s.queue, "in_flight": s.in_flight}
            for role, s in self.roles.items()
        }

    def _refresh_loads(self) -> None:
        for role, reps in self.replicas.items():
            stats = self._role(role)
            stats.in_flight = sum(r.active for r in reps)
            stats.queue = sum(r.load for r in reps) - stats.in_flight

    def flush(self) -> None:
        self._refresh_loads()
        for role, s in self.roles.items():
            now = (s.tasks_in, s.tasks_out, s.failed, s.tokens)
            names = ("matrix_role_tasks_in_total", "matrix_role_tasks_out_total", "matrix_role_tasks_failed_total", "matrix_role_turn_tokens_total")
            for name, new, old in zip(names, now, s._pushed):
                record(name, new - old, role=role)
            s._pushed = now
            record("matrix_role_queue_depth", s.queue, role=role)
            record("matrix_role_in_flight", s.in_flight, role=role)
            latencies, s._latencies, s._since_flush = s._latencies, [], 0
            for value in latencies:
                record("matrix_role_step_seconds", value, role=role)

    def start(self) -> "HostStats":
        if self._task is None:
            self._task = asyncio.ensure_future(self._loop())
        return self

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY_S)
            self.flush()

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.flush()


# --- LLM client ---------------------------------------------------------------------


class LLMMetrics:
    """Recorder of one LLM client, labelled with its resource name."""

    def __init__(self, resource: str):
        self.resource = resource

    def ok(self, result) -> None:
        record("matrix_llm_calls_total", 1, resource=self.resource)
        record("matrix_llm_latency_seconds", result.latency_s, resource=self.resource)
        record("matrix_llm_prompt_tokens_total", result.usage.prompt_tokens, resource=self.resource)
        record("matrix_llm_completion_tokens_total", result.usage.completion_tokens, resource=self.resource)

    def error(self, kind: str, retrying: bool) -> None:
        record("matrix_llm_errors_total", 1, resource=self.resource, kind=kind)
        if retrying:
            record("matrix_llm_retries_total", 1, resource=self.resource)


def error_kind(status: int | None = None, timeout: bool = False, connection: bool = False) -> str:
    """The bounded ``kind`` label of a failed LLM attempt."""
    if timeout:
        return "timeout"
    if connection:
        return "connection"
    if status == 429:
        return "429"
    if status is not None and status >= 500:
        return "5xx"
    if status is not None and status >= 400:
        return "4xx"
    return "malformed"


# --- sink and driver ----------------------------------------------------------------


def written(records: list[dict[str, Any]]) -> None:
    """The sink flushed these records: count them, and the lag since each task's last step."""
    if not _enabled():
        return
    now = time.time()
    for status, n in Counter(rec.get("status") or "?" for rec in records).items():
        record("matrix_sink_records_written_total", n, status=status)
    for rec in records[:: max(1, len(records) // LAG_SAMPLES_PER_BATCH)]:  # the sink is one actor: keep it cheap
        hops = rec.get("hops") or []
        if hops and rec.get("created_at"):
            ended = rec["created_at"] + sum(h.get("queued_s", 0) + h.get("step_s", 0) for h in hops)
            record("matrix_sink_write_lag_seconds", max(0.0, now - ended))


def admitted(n: int = 1) -> None:
    record("matrix_driver_tasks_admitted_total", n)


def resent(n: int) -> None:
    record("matrix_driver_tasks_resent_total", n)


# --- where Prometheus finds the exporters --------------------------------------------


def write_service_discovery() -> str | None:
    """Writes Ray's Prometheus service-discovery file when Ray's dashboard does not.

    Ray's dashboard head keeps ``<session dir>/prom_metrics_service_discovery.json`` (linked
    from the Ray temp dir) up to date; a run started without the dashboard (``matrix run``
    starts a local Ray without it) would leave Prometheus blind, so the same file, in the same
    format and places, lists every live node's metrics export port.
    """
    import ray

    try:
        node = ray._private.worker._global_node
        if node is None:
            return None
        session_dir, temp_dir = node.get_session_dir_path(), node.get_temp_dir_path()
        targets = [f"{n['NodeManagerAddress']}:{n['MetricsExportPort']}" for n in ray.nodes() if (n.get("Alive") or n.get("alive")) and n.get("MetricsExportPort")]
    except Exception as exc:  # a Ray client connection has no local node: nothing to write
        log.debug("no metrics service discovery file: %s", exc)
        return None
    content = json.dumps([{"labels": {"job": "ray"}, "targets": targets}])
    path = os.path.join(session_dir, SERVICE_DISCOVERY_FILE)
    if not os.path.exists(path):
        _atomic_write(path, content)
    legacy = os.path.join(temp_dir, SERVICE_DISCOVERY_FILE)
    if os.path.realpath(legacy) != os.path.realpath(path):
        _atomic_write(legacy, content)
    return path


def _atomic_write(path: str, content: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(content)
    if os.path.islink(path):
        os.unlink(path)
    os.replace(tmp, path)
