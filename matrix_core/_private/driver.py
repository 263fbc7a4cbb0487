"""The run driver: starts services and actors, injects tasks under the global cap, counts
completions. It is never on the path between two agents.

:func:`execute` reads top to bottom as the run goes: validate, resolve plugins, start Ray,
the LLM service, the tool runtime, the sink and the agent hosts (each registers its own
teardown on one ``ExitStack``), drive the tasks, collect the summary.
"""
from __future__ import annotations

import asyncio
import logging
import os
import pickle
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

import ray

from ..errors import ConfigError, MatrixError
from ..options import MatrixConfig, RunOptions, validate
from ..plugins import PluginHost
from ..protocol import Orchestrator, Status
from ..specs import SinkSpec, ToolRuntimeSpec, WorkflowSpec
from .messages import Completion, Delivery, Directory, ReplicaSlot
from .plan import RoleSpec, RunPlan
from . import metrics as prom
from . import leftovers
from . import resources as resources_mod
from .live import HostPoller, expected_tasks
from .progress import Counters, Progress
from . import guards
from .ray_start import init_local
from .ray_errors import last_line, remote_error
from .routing import Router
from .runtime import AgentHost, Outbox
from .sink_actor import SinkActor
from .summary import RunSummary
from .tasks import Tasks

log = logging.getLogger("matrix.driver")

SECRET_MARKERS = ("api_key", "apikey", "token", "secret", "password")
STALL_CHECK_S = 10.0
SINK_ATTEMPTS = 3  # a task the sink refuses this often stops the run (the error names the sink and why)

__all__ = ["RunSummary", "execute", "init_ray", "redact"]


def redact(value: Any) -> Any:
    """A copy of a config tree with secret-looking keys blanked."""
    if isinstance(value, Mapping):
        return {
            # Secrets are strings: a number under a key such as max_tokens is a setting.
            k: ("***" if any(m in str(k).lower() for m in SECRET_MARKERS) and isinstance(v, str) and v else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def init_ray(run: RunOptions | Mapping[str, Any]) -> bool:
    """Start or join Ray. Returns True if this call started it (and so must stop it)."""
    if ray.is_initialized():
        return False
    if not isinstance(run, RunOptions):
        run = RunOptions.model_validate(dict(run))
    address = run.address or os.environ.get("RAY_ADDRESS") or "local"
    kwargs: dict[str, Any] = {"address": address, "include_dashboard": False, "logging_level": logging.WARNING}
    if address == "local":
        if run.num_cpus is not None:
            kwargs["num_cpus"] = run.num_cpus
        kwargs["_temp_dir"] = run.ray_temp_dir or os.path.join(tempfile.gettempdir(), "matrix-ray")
        kwargs["_node_ip_address"] = "127.0.0.1"  # a local cluster talks over loopback only
    else:
        guards.check_address(address, run.connect_timeout_s)  # ray.init would retry a dead address for minutes
    try:
        init_local(kwargs) if address == "local" else ray.init(**kwargs)
    except Exception as exc:  # Ray raises a bare Exception when its node does not come up in time
        raise MatrixError(f"cannot start or join Ray at {address!r}: {exc}") from None
    return True


class _Drive:
    """Injects tasks, counts completions, and re-sends what a dead actor took with it.

    Every injected task stays in ``pending`` (with the state to restart it from) until the
    sink reports it written. When a host comes back with a new incarnation, or nothing has
    finished for a while, the driver asks every host which tasks it holds and the sink which
    are written; a pending task held by nobody is re-sent from its last checkpoint (or from
    the start). A task that is in fact still alive somewhere finishes twice; the sink keeps
    the first, so the output holds it exactly once.
    """

    def __init__(self, plan: RunPlan, run: RunOptions, tasks: Tasks, hosts: list, incarnations: list[str], directory: Directory, sink, progress_mode: str):
        self.plan, self.tasks, self.hosts, self.sink = plan, tasks, hosts, sink
        self.counters = Counters()
        self.progress = Progress(self.counters, progress_mode)
        self.cap = run.max_concurrent_tasks
        self.health_every_s = run.health_check_s
        self.router = Router(directory.replicas)
        self.pending: dict[str, Orchestrator] = {}
        self.incarnations: list[str | None] = [*incarnations, None]  # hosts, then the sink
        self.resent = self.resent_from_checkpoint = 0
        self.on_written: Callable[[list[str]], None] | None = None  # e.g. releases the written tasks' sandboxes
        self.boxes = [self._box(lambda b, h=h: h.deliver.remote(b), self.router.update) for h in hosts]
        self.sink_box = Outbox(send=lambda b: sink.write.remote(b), on_reply=lambda _: None, on_error=self._sink_failed,
                               max_batch=self.plan.batch_max, max_outstanding=self.plan.outstanding_per_peer)
        self.sink_failures: dict[str, int] = {}
        self.fatal: MatrixError | None = None
        self.lost_host_timeout_s = run.lost_host_timeout_s
        self.poller = HostPoller(hosts, self.progress.interval_s)

    def _box(self, send, on_reply) -> Outbox:
        return Outbox(send=send, on_reply=on_reply, on_error=self._send_failed,
                      max_batch=self.plan.batch_max, max_outstanding=self.plan.outstanding_per_peer)

    def _send_failed(self, batch, exc) -> None:
        # Still pending: the next reconciliation re-sends them.
        log.warning("%d task(s) could not be delivered (%s); they will be re-sent", len(batch), exc)

    def _sink_failed(self, batch, exc) -> None:
        """Still pending, so re-sent; a task the sink's ``write`` refused ``SINK_ATTEMPTS`` times
        stops the run (a sink that died and restarts is not counted: that is a resend's job)."""
        from ray.exceptions import RayActorError

        if not isinstance(exc, ray.exceptions.RayTaskError) or isinstance(exc, RayActorError):
            self._send_failed(batch, exc)
            return
        for orch in batch:
            self.sink_failures[orch.task_id] = tries = self.sink_failures.get(orch.task_id, 0) + 1
            if tries >= SINK_ATTEMPTS and self.fatal is None:
                self.fatal = MatrixError(f"the sink could not write task {orch.task_id} in {tries} attempts: {last_line(getattr(exc, 'cause', None) or exc)}")
        self._send_failed(batch, exc)

    def inject(self, orch: Orchestrator) -> None:
        self.pending[orch.task_id] = orch
        role = None if orch.done else orch.next_role()
        if role is None:
            if orch.status is Status.RUNNING:
                orch.status = Status.DONE
            self.sink_box.add(orch)
            return
        target = self.router.pick(role)
        if target is None:
            orch.fail(f"first role {role!r} has no agent; configured roles: {self.router.role_names()}")
            self.sink_box.add(orch)
            return
        if self.plan.offload_threshold_bytes and orch.payload is not None:
            orch.offload(self.plan.offload_threshold_bytes, payload_bytes=len(pickle.dumps(orch.payload, protocol=5)))
        self.boxes[target.host].add(Delivery(role, target.index, orch))

    def complete(self, done: Completion) -> None:
        if self.pending.pop(done.task_id, None) is None:
            return
        c = self.counters
        c.in_flight -= 1
        c.hops += done.steps
        c.tokens += done.tokens
        if done.status == Status.DONE.value:
            c.done += 1
        else:
            c.failed += 1

    async def run(self) -> None:
        source = iter(self.tasks)
        last_progress = last_health = time.monotonic()
        while True:
            if self.fatal is not None:
                raise self.fatal
            exhausted = await self._fill(source)
            if exhausted and self.counters.in_flight <= 0:
                await self.poller.poll(self.counters, force=True)  # the final numbers for the live view
                return
            try:
                completions: list[Completion] = await self.sink.poll.remote(0.5)
            except ray.exceptions.RayTaskError as exc:  # the sink cannot write at all: one line, not a remote traceback
                raise remote_error(exc) from None
            for done in completions:
                self.complete(done)
                last_progress = time.monotonic()
            if completions and self.on_written is not None:
                self.on_written([done.task_id for done in completions])
            now = time.monotonic()
            stalled = now - last_progress > STALL_CHECK_S
            if stalled or now - last_health > self.health_every_s:
                last_health = now
                if await self._restarted() or stalled:
                    await self.reconcile()
                    last_progress = time.monotonic()
            await self.poller.poll(self.counters)
            self.progress.update()

    async def _fill(self, source: Iterator[Orchestrator]) -> bool:
        """Injects tasks up to the cap; True once the dataset is exhausted."""
        c = self.counters
        injected = 0
        while c.in_flight < self.cap:
            orch = next(source, None)
            if orch is None:
                c.skipped = self.tasks.skipped
                prom.admitted(injected)
                return True
            c.in_flight += 1
            c.peak_in_flight = max(c.peak_in_flight, c.in_flight)
            injected += 1
            self.inject(orch)
            if injected % 256 == 0:
                await asyncio.sleep(0)  # let the outboxes flush while we keep reading rows
        c.skipped = self.tasks.skipped
        prom.admitted(injected)
        return False

    async def _restarted(self) -> bool:
        """True when a host answers with a new incarnation (Ray restarted its process)."""
        from ray.exceptions import RayActorError

        changed = False
        actors = [*((f"agent host {i}", h) for i, h in enumerate(self.hosts)), ("sink", self.sink)]
        for i, (name, actor) in enumerate(actors):
            try:
                incarnation = await asyncio.wait_for(actor.ping.remote(), self.lost_host_timeout_s)
            except (RayActorError, asyncio.TimeoutError) as exc:
                raise MatrixError(
                    f"{name} died and could not be restarted (or did not answer within run.lost_host_timeout_s={self.lost_host_timeout_s:g}s: {type(exc).__name__}) with {self.counters.in_flight} "
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
        held.update(item.orch.task_id for box in self.boxes for item in box.items())
        held.update(o.task_id for o in self.sink_box.items())
        waiting = [t for t in self.pending if t not in held]
        if not waiting:
            return
        written, checkpoints = await self.sink.recover.remote(waiting)
        for task_id, status in written.items():
            self.complete(Completion(task_id, status))
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



def execute(cfg: Mapping[str, Any], host: PluginHost, *, progress_mode: str | None = None) -> RunSummary:
    """Run a composed workflow config (a plain dict) to completion."""
    conf = validate(cfg, host)  # a bad key or value is one line, before anything starts
    plugins = _resolve(conf, host)
    llm_resources = resources_mod.plan_resources(conf.raw, host, _roles(conf, 1))  # one line per mistake, before Ray
    summary = RunSummary(workflow=conf.workflow, output=conf.sink.path or "")
    startup = time.perf_counter()
    with ExitStack() as teardown:  # undone in reverse: actors, runtime, LLM service, Ray
        run_id = uuid.uuid4().hex[:8]  # names the actors so peers, operators and tests can find them
        leftovers.reap(conf.sink.path)  # what a killed run on this output left (it holds CPUs and the output lock)
        teardown.callback(leftovers.forget, conf.sink.path, run_id)
        started_ray = init_ray(conf.run)
        if started_ray:
            teardown.callback(ray.shutdown)
        leftovers.record(conf.sink.path, run_id, started_ray)
        hosts_n = _host_count(conf.run)
        roles = _roles(conf, hosts_n)
        prom.bind_run(run_id, conf.workflow)
        prom.write_service_discovery()  # where Prometheus finds this Ray's metrics exporters
        _start_llms(llm_resources, host, teardown, run_id)
        runtime = _start_runtime(conf, plugins, roles, run_id, teardown, summary)
        plan = _plan(conf, plugins.workflow, roles, hosts_n, llm_resources)
        placement, directory = _directory(plan, run_id)
        sink, existing = _start_sink(conf, plugins, directory, teardown)
        hosts, incarnations = _start_hosts(plan, placement, directory, teardown)
        tasks = Tasks(plugins.rows, plugins.workflow.orchestrator, conf, existing, resume=_get(sink.resume_points.remote()))
        drive = _Drive(plan, conf.run, tasks, hosts, incarnations, directory, sink, progress_mode or conf.run.progress)
        drive.counters.total = expected_tasks(conf.raw)
        if runtime is not None:
            drive.on_written = runtime.release_tasks
        asyncio.run(drive.run())
        _collect(drive, summary, startup)
    return summary


@dataclass
class _Plugins:
    """What the config names, looked up before Ray starts: an unknown name fails first."""

    workflow: WorkflowSpec
    sink: SinkSpec
    runtime: ToolRuntimeSpec | None
    rows: Iterator[tuple[int, Any]]
    runtimes_installed: list[str]
    metrics: Any  # the workflow's RunMetrics: built here so a workflow's own config checks fail before Ray


def _resolve(conf: MatrixConfig, host: PluginHost) -> _Plugins:
    runtime_name = (conf.raw.get("runtime") or {}).get("name")
    workflow = host.get("workflow", conf.workflow)
    sink = host.get("sink", conf.sink.name)
    location = guards.sink_location(sink, conf.raw.get("sink") or {})  # a bad sink option fails here, not in its actor
    guards.check_output(location, {"dataset.path": conf.dataset.path})  # before anything is written
    return _Plugins(
        workflow=workflow,
        sink=sink,
        runtime=host.get("tool_runtime", runtime_name) if runtime_name else None,
        # Opens the file now: a missing dataset fails before Ray starts; so does an empty one.
        rows=guards.first_row_or_fail(host.get("dataset_loader", conf.dataset.loader).load(conf.dataset.model_dump()), conf.dataset),
        runtimes_installed=sorted(host.registry("tool_runtime")),
        metrics=workflow.metrics(conf.raw) if workflow.metrics else None,
    )


def _host_count(run: RunOptions) -> int:
    if run.hosts == "auto":
        cpus = int(ray.available_resources().get("CPU", 1)) if ray.is_initialized() else (os.cpu_count() or 1)
        return max(1, min(cpus, 8))
    return run.hosts


def _roles(conf: MatrixConfig, hosts: int) -> dict[str, RoleSpec]:
    roles = {}
    for name, role in conf.roles.items():
        section = role.section
        replicas = section.replicas if section.replicas is not None else (1 if section.resources else hosts)
        roles[name] = RoleSpec(name, role.agent_cls, replicas, section.max_in_flight, role.options.model_dump(),
                               dict(section.resources), llm=section.llm)
    return roles


def _start_llms(resources: "resources_mod.LLMResources", host: PluginHost, teardown: ExitStack, run_id: str) -> None:
    """Starts each LLM resource some role uses, once; the run stops those it started."""
    teardown.callback(resources_mod.stop_resources, resources_mod.start_resources(resources, host, run_id))


def _start_runtime(conf: MatrixConfig, plugins: _Plugins, roles: Mapping[str, RoleSpec], run_id: str,
                   teardown: ExitStack, summary: RunSummary):
    """Starts the tool runtime if an agent uses one; agents find its actor by the name put in the config."""
    if not any(getattr(r.agent_cls, "uses_runtime", False) for r in roles.values()):
        return None
    spec = plugins.runtime
    if spec is None:
        installed = ", ".join(plugins.runtimes_installed) or "none"
        raise ConfigError(f"this workflow's agents run code in a tool runtime but none is configured; set runtime=NAME (installed: {installed})")
    from .tool_service import start_runtime

    runtime_cfg = dict(conf.raw.get("runtime") or {})
    handle = start_runtime(spec, runtime_cfg, f"matrix-runtime-{run_id}")
    teardown.callback(lambda: setattr(summary, "runtime", handle.stop() or {}))
    conf.raw = {**conf.raw, "runtime": {**runtime_cfg, "service": handle.name}}
    return handle


def _plan(conf: MatrixConfig, workflow: WorkflowSpec, roles: dict[str, RoleSpec], hosts: int,
          llm_resources: "resources_mod.LLMResources") -> RunPlan:
    run = conf.run
    return RunPlan(
        workflow=conf.workflow,
        orchestrator_cls=workflow.orchestrator,
        roles=roles,
        hosts=hosts,
        offload_threshold_bytes=run.offload_threshold_bytes,
        max_steps=run.max_steps,
        task_timeout_s=run.task_timeout_s,
        llm_resources=llm_resources,
        colocate=run.colocate,
        checkpoint_every=run.checkpoint_every,
        batch_max=run.batch_max,
        outstanding_per_peer=run.outstanding_per_peer,
        run_config=redact(conf.raw),
    )


def _directory(plan: RunPlan, run_id: str) -> tuple[list[list[tuple[str, int]]], Directory]:
    placement = plan.placement()
    replicas: dict[str, list[ReplicaSlot]] = {}
    for i, on_host in enumerate(placement):
        for role, replica in on_host:
            replicas.setdefault(role, []).append(ReplicaSlot(i, replica, plan.roles[role].max_in_flight))
    hosts = [f"matrix-host-{run_id}-{i}" for i in range(len(placement))]
    return placement, Directory(sink=f"matrix-sink-{run_id}", hosts=hosts, replicas=replicas, run_id=run_id)


def _start_sink(conf: MatrixConfig, plugins: _Plugins, directory: Directory, teardown: ExitStack):
    """Starts the sink actor; returns it and what earlier runs wrote to the output (resume)."""
    owner = {
        "workflow": conf.workflow,
        # Not size/limit: growing a dataset and resuming into the same output is normal.
        "dataset": {"loader": conf.dataset.loader, "path": conf.dataset.path, "id_field": conf.dataset.id_field},
        "trials": conf.run.trials,
    }
    sink = SinkActor.options(name=directory.sink, num_cpus=0, max_concurrency=64).remote(
        plugins.sink.cls, dict(conf.raw.get("sink") or {}), plugins.metrics, conf.resume.retry_failed, owner, conf.run.force
    )
    teardown.callback(_kill, sink)
    return sink, _get(sink.open.remote())


def _start_hosts(plan: RunPlan, placement: list, directory: Directory, teardown: ExitStack) -> tuple[list, list[str]]:
    """Creates the agent hosts and waits until each has set up its agents."""
    from ray.exceptions import RayActorError

    hosts = []
    for i, on_host in enumerate(placement):
        resources = _ray_resources(plan.host_resources(on_host))
        hosts.append(AgentHost.options(name=directory.hosts[i], num_cpus=0, max_concurrency=100_000, **resources)
                     .remote(i, plan, on_host, directory))
        teardown.callback(_kill, hosts[-1])
    incarnations = []
    for i, ref in enumerate([h.start.remote() for h in hosts]):  # all start at once
        try:
            incarnations.append(_get(ref))
        except RayActorError as exc:  # killed while starting: no task was sent yet
            raise MatrixError(
                f"agent host {i} died and could not be restarted ({type(exc).__name__}) while starting; "
                "run the same command again: tasks already in the output are kept"
            ) from None
    return hosts, incarnations


def _collect(drive: _Drive, summary: RunSummary, startup: float) -> None:
    """Lets the hosts drain, closes the sink and fills the summary."""
    hosts, counters, tasks = drive.hosts, drive.counters, drive.tasks
    drive.progress.close()
    ray.get([h.drain.remote() for h in hosts])
    stats = ray.get([h.stats.remote() for h in hosts])
    closing = ray.get(drive.sink.close.remote())
    ray.get([h.close.remote() for h in hosts])
    summary.output = closing["location"] or summary.output
    summary.metrics = closing["metrics"]
    summary.rows, summary.duplicate_rows = tasks.rows_read, tasks.duplicate_rows
    summary.done, summary.failed, summary.skipped = counters.done, counters.failed, tasks.skipped
    summary.failed_not_retried = tasks.skipped_failed
    summary.hops, summary.tokens, summary.wall_s = counters.hops, counters.tokens, counters.elapsed
    summary.llm = resources_mod.summarize([row for s in stats for row in s["llm"]], drive.plan.llm_resources)
    summary.peak_in_flight = counters.peak_in_flight
    summary.startup_s = counters.started - startup
    summary.resent, summary.resent_from_checkpoint = drive.resent, drive.resent_from_checkpoint
    summary.continued = tasks.resumed
    for s in stats:
        for role, reps in s["replicas"].items():
            summary.roles.setdefault(role, []).extend(reps)
        if s.get("llm_cache"):
            summary.llm_cache = {k: (summary.llm_cache or {}).get(k, 0) + v for k, v in s["llm_cache"].items()}


def _kill(actor) -> None:
    try:
        ray.kill(actor)
    except Exception:  # already gone
        pass


def _get(refs):
    """``ray.get`` that re-raises a remote MatrixError as itself (one line, no remote traceback)."""
    from ray.exceptions import RayTaskError

    try:
        return ray.get(refs)
    except RayTaskError as exc:
        raise remote_error(exc) from None


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
