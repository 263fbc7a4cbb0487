"""The run driver: starts services and actors, injects tasks under the global cap, counts
completions. It is never on the path between two agents."""
from __future__ import annotations

import asyncio
import logging
import os
import pickle
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import ray

from ..errors import ConfigError, MatrixError
from ..plugins import PluginHost
from ..protocol import Orchestrator, Status, task_id_for
from ..specs import ServiceHandle
from .plan import RoleSpec, RunPlan
from . import metrics as prom
from .live import HostPoller, expected_tasks
from .progress import Counters, Progress
from .runtime import AgentHost, Outbox, ReplicaRef, apply_load_report
from .sink_actor import SinkActor

log = logging.getLogger("matrix.driver")

ROLE_KEYS = {"type", "replicas", "max_in_flight", "resources"}
SECRET_MARKERS = ("api_key", "apikey", "token", "secret", "password")


@dataclass
class RunSummary:
    workflow: str
    output: str
    rows: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    hops: int = 0
    tokens: int = 0
    wall_s: float = 0.0
    roles: dict[str, Any] = field(default_factory=dict)
    resent: int = 0
    duplicate_rows: int = 0
    resent_from_checkpoint: int = 0
    peak_in_flight: int = 0
    startup_s: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)
    runtime: dict[str, Any] = field(default_factory=dict)  # the tool runtime's final stats, if one ran

    @property
    def tasks_per_s(self) -> float:
        return (self.done + self.failed) / self.wall_s if self.wall_s else 0.0

    @property
    def hops_per_s(self) -> float:
        return self.hops / self.wall_s if self.wall_s else 0.0

    def text(self) -> str:
        return (
            f"matrix run {self.workflow}: {self.done} done, {self.failed} failed, {self.skipped} already in output"
            + (f", {self.resent} re-sent after a failure ({self.resent_from_checkpoint} from a checkpoint)" if self.resent else "")
            + (f", {self.duplicate_rows} duplicate rows skipped" if self.duplicate_rows else "")
            + f" | {self.wall_s:.1f}s wall, {self.tasks_per_s:.1f} tasks/s, {self.hops_per_s:.0f} hops/s, "
            f"{self.tokens} tokens ({self.tokens / self.wall_s if self.wall_s else 0:.0f}/s) | output: {self.output}"
            + "".join(f"\n  {k}: {_fmt(v)}" for k, v in self.metrics.items())
        )


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def redact(value: Any) -> Any:
    """A copy of a config tree with secret-looking keys blanked."""
    if isinstance(value, Mapping):
        return {
            k: ("***" if any(m in str(k).lower() for m in SECRET_MARKERS) and v else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _roles(cfg: Mapping[str, Any], host: PluginHost, hosts: int) -> dict[str, RoleSpec]:
    agents = cfg.get("agents") or {}
    if not agents:
        raise ConfigError(f"workflow {cfg['workflow']!r} configures no agents (the 'agents' section is empty)")
    roles = {}
    for name, section in agents.items():
        section = dict(section or {})
        if "type" not in section:
            raise ConfigError(f"agents.{name}.type is missing: name the agent type for role {name!r}")
        spec = host.get("agent", section["type"])
        resources = dict(section.get("resources") or {})
        replicas = int(section.get("replicas") or (1 if resources else hosts))
        max_in_flight = int(section.get("max_in_flight") or 64)
        if replicas < 1 or max_in_flight < 1:
            raise ConfigError(f"agents.{name}: replicas and max_in_flight must be >= 1")
        options = {k: v for k, v in section.items() if k not in ROLE_KEYS}
        roles[name] = RoleSpec(name, spec.cls, replicas, max_in_flight, options, resources)
    return roles


def _host_count(run: Mapping[str, Any]) -> int:
    value = run.get("hosts", "auto")
    if value in (None, "auto"):
        cpus = int(ray.available_resources().get("CPU", 1)) if ray.is_initialized() else (os.cpu_count() or 1)
        return max(1, min(cpus, 8))
    if int(value) < 1:
        raise ConfigError(f"run.hosts must be >= 1 or 'auto', got {value!r}")
    return int(value)


def init_ray(run: Mapping[str, Any]) -> bool:
    """Start or join Ray. Returns True if this call started it (and so must stop it)."""
    if ray.is_initialized():
        return False
    address = run.get("address") or os.environ.get("RAY_ADDRESS") or "local"
    kwargs: dict[str, Any] = {"address": address, "include_dashboard": False, "logging_level": logging.WARNING}
    if address == "local":
        if run.get("num_cpus"):
            kwargs["num_cpus"] = int(run["num_cpus"])
        kwargs["_temp_dir"] = run.get("ray_temp_dir") or os.path.join(tempfile.gettempdir(), "matrix-ray")
        kwargs["_node_ip_address"] = "127.0.0.1"  # a local cluster talks over loopback only
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise MatrixError(f"cannot start or join Ray at {address!r}: {exc}") from None
    return True


class _Tasks:
    """Turns dataset rows into orchestrators, lazily; unreadable rows become failed tasks."""

    def __init__(self, rows: Iterator[tuple[int, Any]], orchestrator_cls: type[Orchestrator], cfg: Mapping[str, Any], skip: Mapping[str, str], retry_failed: bool):
        self.rows = rows
        self.cls = orchestrator_cls
        self.cfg = cfg
        self.dataset = cfg.get("dataset") or {}
        self.id_field = self.dataset.get("id_field")
        self.trials = int((cfg.get("run") or {}).get("trials", 1))
        self.limit = self.dataset.get("limit")
        self.skip = skip
        self.retry_failed = retry_failed
        self.skipped = 0
        self.rows_read = 0
        self.bad_rows = 0
        self.duplicate_rows = 0
        self._seen: dict[str, int] = {}

    def __iter__(self) -> Iterator[Orchestrator]:
        for row_number, row in self.rows:
            if self.limit is not None and self.rows_read >= int(self.limit):
                return
            self.rows_read += 1
            where = f"{self.dataset.get('path') or self.dataset.get('loader')} row {row_number}"
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

    def _failed(self, task_id: str, key: str, trial: int, exc: Exception, where: str) -> Orchestrator:
        orch = Orchestrator.model_construct(
            task_id=task_id, row_key=key, trial=trial, payload=None, history=[], history_segments=[],
            state={"dataset_row": where}, status=Status.RUNNING, error=None, steps=0, current_role=None,
            hops=[], created_at=time.time(),
        )
        orch.fail(exc, role="dataset")
        return orch


class _Drive:
    """Injects tasks, counts completions, and re-sends what a dead actor took with it.

    Every injected task stays in ``pending`` (with the state to restart it from) until the
    sink reports it written. When a host comes back with a new incarnation, or nothing has
    finished for a while, the driver asks every host which tasks it holds and the sink which
    are written; a pending task held by nobody is re-sent from its last checkpoint (or from
    the start). A task that is in fact still alive somewhere finishes twice; the sink keeps
    the first, so the output holds it exactly once.
    """

    def __init__(self, plan: RunPlan, cfg: Mapping[str, Any], tasks: _Tasks, hosts: list, table: dict, sink, counters: Counters, progress: Progress):
        self.plan, self.tasks, self.hosts, self.sink = plan, tasks, hosts, sink
        self.counters, self.progress = counters, progress
        run = cfg["run"]
        self.cap = int(run["max_concurrent_tasks"])
        self.health_every_s = float(run.get("health_check_s") or 2.0)
        self.refs = {role: [ReplicaRef(h, i, c) for h, i, c in entries] for role, entries in table.items()}
        self.by_key = {(role, r.host, r.index): r for role, rs in self.refs.items() for r in rs}
        self.pending: dict[str, Orchestrator] = {}
        self.incarnations: list[str | None] = [None] * (len(hosts) + 1)  # hosts, then the sink
        self.resent = self.resent_from_checkpoint = 0
        self.on_written = None  # called with the ids the sink wrote (releases their sandboxes)
        self.boxes = [self._box(lambda b, h=h: h.deliver.remote(b), self._update_loads) for h in hosts]
        self.sink_box = self._box(lambda b: sink.write.remote(b), lambda _: None)
        self.poller = HostPoller(hosts, progress.interval_s)

    def _box(self, send, on_reply) -> Outbox:
        return Outbox(send=send, on_reply=on_reply, on_error=self._send_failed,
                      max_batch=self.plan.batch_max, max_outstanding=self.plan.outstanding_per_peer)

    def _update_loads(self, reply) -> None:
        apply_load_report(self.by_key, reply)

    def _send_failed(self, batch, exc) -> None:
        # Still pending: the next reconciliation re-sends them.
        log.warning("%d task(s) could not be delivered (%s); they will be re-sent", len(batch), exc)

    def inject(self, orch: Orchestrator) -> None:
        self.pending[orch.task_id] = orch
        role = None if orch.done else orch.next_role()
        if role is None:
            if orch.status is Status.RUNNING:
                orch.status = Status.DONE
            self.sink_box.add(orch)
            return
        targets = self.refs.get(role)
        if not targets:
            orch.fail(f"first role {role!r} has no agent; configured roles: {', '.join(sorted(self.refs))}")
            self.sink_box.add(orch)
            return
        target = min(targets, key=lambda r: r.load / r.capacity)
        target.load += 1
        if self.plan.offload_threshold_bytes and orch.payload is not None:
            orch.offload(self.plan.offload_threshold_bytes, payload_bytes=len(pickle.dumps(orch.payload, protocol=5)))
        self.boxes[target.host].add((role, target.index, orch))

    def complete(self, task_id: str, status: str, steps: int = 0, tokens: int = 0) -> None:
        if self.pending.pop(task_id, None) is None:
            return
        c = self.counters
        c.in_flight -= 1
        c.hops += steps
        c.tokens += tokens
        if status == Status.DONE.value:
            c.done += 1
        else:
            c.failed += 1

    async def run(self) -> None:
        c = self.counters
        source = iter(self.tasks)
        exhausted = False
        last_progress = last_health = time.monotonic()
        while True:
            injected = 0
            while not exhausted and c.in_flight < self.cap:
                orch = next(source, None)
                if orch is None:
                    exhausted = True
                    break
                c.in_flight += 1
                c.peak_in_flight = max(c.peak_in_flight, c.in_flight)
                injected += 1
                self.inject(orch)
                if injected % 256 == 0:
                    await asyncio.sleep(0)  # let the outboxes flush while we keep reading rows
            c.skipped = self.tasks.skipped
            prom.admitted(injected)
            if exhausted and c.in_flight <= 0:
                await self.poller.poll(c, force=True)  # the final numbers for the live view
                return
            completions = await self.sink.poll.remote(0.5)
            for task_id, status, steps, tokens in completions:
                self.complete(task_id, status, steps, tokens)
                last_progress = time.monotonic()
            if completions and self.on_written is not None:
                self.on_written([c[0] for c in completions])
            now = time.monotonic()
            stalled = now - last_progress > STALL_CHECK_S
            if stalled or now - last_health > self.health_every_s:
                last_health = now
                if await self._restarted() or stalled:
                    await self.reconcile()
                    last_progress = time.monotonic()
            await self.poller.poll(c)
            self.progress.update()

    async def _restarted(self) -> bool:
        """True when a host answers with a new incarnation (Ray restarted its process)."""
        from ray.exceptions import RayActorError

        changed = False
        actors = [*((f"agent host {i}", h) for i, h in enumerate(self.hosts)), ("sink", self.sink)]
        for i, (name, actor) in enumerate(actors):
            try:
                incarnation = await asyncio.wait_for(actor.ping.remote(), 60)
            except (RayActorError, asyncio.TimeoutError) as exc:
                raise MatrixError(
                    f"{name} died and could not be restarted ({type(exc).__name__}) with {self.counters.in_flight} "
                    "task(s) in flight; run the same command again: tasks already in the output are kept, the rest are redone"
                ) from None
            if self.incarnations[i] not in (None, incarnation):
                log.warning("%s was restarted; re-sending the tasks it lost", name)
                changed = True
            self.incarnations[i] = incarnation
        return changed

    async def reconcile(self) -> None:
        held: set[str] = set()
        for host in self.hosts:
            _, ids = await host.held_ids.remote()
            held.update(ids)
        held.update(item[2].task_id for box in self.boxes for item in box.items())
        held.update(o.task_id for o in self.sink_box.items())
        waiting = [t for t in self.pending if t not in held]
        if not waiting:
            return
        written, checkpoints = await self.sink.recover.remote(waiting)
        for task_id, status in written.items():
            self.complete(task_id, status)
        lost = [t for t in waiting if t not in written]
        for task_id in lost:
            orch = self.pending[task_id]
            if task_id in checkpoints:
                orch = type(orch).model_validate(checkpoints[task_id])
            self.inject(orch)
        if lost:
            from_checkpoint = sum(t in checkpoints for t in lost)
            self.resent += len(lost)
            prom.resent(len(lost))
            self.resent_from_checkpoint += from_checkpoint
            log.warning("re-sent %d task(s) lost in flight (%d from a checkpoint)", len(lost), from_checkpoint)


STALL_CHECK_S = 10.0


def execute(cfg: Mapping[str, Any], host: PluginHost, *, progress_mode: str | None = None) -> RunSummary:
    """Run a composed workflow config (a plain dict) to completion."""
    run = cfg["run"]
    workflow = host.get("workflow", cfg["workflow"])
    sink_cfg = dict(cfg.get("sink") or {})
    sink_spec = host.get("sink", sink_cfg.get("name", "jsonl"))
    dataset_cfg = dict(cfg.get("dataset") or {})
    loader = host.get("dataset_loader", dataset_cfg.get("loader", "jsonl"))
    # Validate agent types before anything starts.
    _roles(cfg, host, 1)
    llm_cfg = dict(cfg.get("llm") or {})
    backend = host.get("llm_backend", llm_cfg["backend"]) if llm_cfg.get("backend") else None
    runtime_cfg = dict(cfg.get("runtime") or {})
    runtime_spec = host.get("tool_runtime", runtime_cfg["name"]) if runtime_cfg.get("name") else None
    rows = loader.load(dataset_cfg)  # opens the file now: a missing dataset fails before Ray starts

    startup = time.perf_counter()
    started_ray = init_ray(run)
    service: ServiceHandle | None = None
    tool_runtime = None
    actors: list = []
    summary = RunSummary(workflow=cfg["workflow"], output=str(sink_cfg.get("path", "")))
    try:
        hosts_n = _host_count(run)
        roles = _roles(cfg, host, hosts_n)
        needs_llm = any(getattr(r.agent_cls, "uses_llm", False) for r in roles.values())
        if needs_llm and backend is None:
            raise ConfigError("this workflow's agents call an LLM but no llm backend is configured (set llm=NAME)")
        if needs_llm:
            service = backend.start(llm_cfg)
        run_id = uuid.uuid4().hex[:8]  # names the actors so peers, operators and tests can find them
        prom.bind_run(run_id, cfg["workflow"])
        prom.write_service_discovery()  # where Prometheus finds this Ray's metrics exporters
        if any(getattr(r.agent_cls, "uses_runtime", False) for r in roles.values()):
            if runtime_spec is None:
                raise ConfigError(
                    "this workflow's agents run code in a tool runtime but none is configured; set runtime=NAME "
                    f"(installed: {', '.join(sorted(host.registry('tool_runtime'))) or 'none'})"
                )
            from .tool_service import start_runtime

            tool_runtime = start_runtime(runtime_spec, runtime_cfg, f"matrix-runtime-{run_id}")
            cfg = {**cfg, "runtime": {**runtime_cfg, "service": tool_runtime.name}}  # agents find it by name
        plan = RunPlan(
            workflow=cfg["workflow"],
            orchestrator_cls=workflow.orchestrator,
            roles=roles,
            hosts=hosts_n,
            offload_threshold_bytes=int(run.get("offload_threshold_bytes") or 0),
            max_steps=int(run.get("max_steps") or 1000),
            task_timeout_s=float(run["task_timeout_s"]) if run.get("task_timeout_s") else None,
            llm_endpoints=service.endpoints if service else [],
            llm_client=dict(llm_cfg.get("client") or {}),
            colocate=bool(run.get("colocate", True)),
            checkpoint_every=int(run.get("checkpoint_every") or 0),
            batch_max=int(run.get("batch_max") or 256),
            outstanding_per_peer=int(run.get("outstanding_per_peer") or 2),
            run_config=redact(cfg),
        )
        retry_failed = bool((cfg.get("resume") or {}).get("retry_failed", False))
        metrics = workflow.metrics(cfg) if workflow.metrics else None
        names = {"sink": f"matrix-sink-{run_id}", "run_id": run_id}
        owner = {
            "workflow": cfg["workflow"],
            # Not size/limit: growing a dataset and resuming into the same output is normal.
            "dataset": {k: dataset_cfg.get(k) for k in ("loader", "path", "id_field")},
            "trials": int(run.get("trials", 1)),
        }
        sink = SinkActor.options(name=names["sink"], num_cpus=0, max_concurrency=64).remote(
            sink_spec.cls, sink_cfg, metrics, retry_failed, owner, bool(run.get("force", False))
        )
        actors.append(sink)
        existing = _get(sink.open.remote())
        placement = plan.placement()
        names["hosts"] = [f"matrix-host-{run_id}-{i}" for i in range(len(placement))]
        table: dict[str, list[tuple[int, int, int]]] = {}
        for i, p in enumerate(placement):
            for role, replica in p:
                table.setdefault(role, []).append((i, replica, roles[role].max_in_flight))
        hosts = [
            AgentHost.options(
                name=names["hosts"][i], num_cpus=0, max_concurrency=100_000, **_ray_resources(plan.host_resources(p))
            ).remote(i, plan, p, names, table)
            for i, p in enumerate(placement)
        ]
        actors.extend(hosts)
        incarnations = _start_hosts(hosts)

        tasks = _Tasks(rows, workflow.orchestrator, cfg, existing, retry_failed)
        counters = Counters(total=expected_tasks(cfg))
        progress = Progress(counters, progress_mode or str(run.get("progress", "auto")))
        drive = _Drive(plan, cfg, tasks, hosts, table, sink, counters, progress)
        drive.incarnations = [*incarnations, None]
        if tool_runtime is not None:
            drive.on_written = tool_runtime.release_tasks
        asyncio.run(drive.run())
        summary.resent, summary.resent_from_checkpoint = drive.resent, drive.resent_from_checkpoint
        progress.close()
        ray.get([h.drain.remote() for h in hosts])
        stats = ray.get([h.stats.remote() for h in hosts])
        closing = ray.get(sink.close.remote())
        ray.get([h.close.remote() for h in hosts])
        summary.output = closing["location"] or summary.output
        summary.metrics = closing["metrics"]
        summary.rows = tasks.rows_read
        summary.duplicate_rows = tasks.duplicate_rows
        summary.done, summary.failed, summary.skipped = counters.done, counters.failed, tasks.skipped
        summary.hops, summary.tokens, summary.wall_s = counters.hops, counters.tokens, counters.elapsed
        summary.peak_in_flight = counters.peak_in_flight
        summary.startup_s = counters.started - startup
        for s in stats:
            for role, reps in s["replicas"].items():
                summary.roles.setdefault(role, []).extend(reps)
        return summary
    finally:
        for actor in actors:
            try:
                ray.kill(actor)
            except Exception:  # already gone
                pass
        if tool_runtime is not None:
            summary.runtime = tool_runtime.stop() or {}
        if service is not None:
            service.stop()
        if started_ray:
            ray.shutdown()


def _start_hosts(hosts: list) -> list:
    from ray.exceptions import RayActorError

    incarnations = []
    for i, ref in enumerate([h.start.remote() for h in hosts]):  # all start at once
        try:
            incarnations.append(_get(ref))
        except RayActorError as exc:  # killed while starting: no task was sent yet
            raise MatrixError(
                f"agent host {i} died and could not be restarted ({type(exc).__name__}) while starting; "
                "run the same command again: tasks already in the output are kept"
            ) from None
    return incarnations


def _get(refs):
    """``ray.get`` that re-raises a remote MatrixError as itself (one line, no remote traceback)."""
    from ray.exceptions import RayTaskError

    try:
        return ray.get(refs)
    except RayTaskError as exc:
        if isinstance(exc.cause, MatrixError):
            raise exc.cause from None
        raise MatrixError(f"{type(exc.cause).__name__}: {exc.cause}") from None


def _ray_resources(resources: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    extra = {}
    for key, value in resources.items():
        if key in ("num_cpus", "num_gpus", "memory"):
            out[key] = value
        else:
            extra[key] = value
    if extra:
        out["resources"] = extra
    return out
