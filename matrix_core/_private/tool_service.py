"""The tool runtime service: one Ray actor that owns every sandbox of a run.

Agents are spread over processes and a task can move between them, so sandboxes cannot
belong to an agent: the service leases them by ``(task id, name)``, keeps up to
``runtime.warm_pool`` ready ones, allows ``runtime.max_sandboxes`` to exist at once (an
acquire waits for one to free) and ``runtime.max_concurrency`` commands to run at once.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from typing import Any, Callable, Mapping, Sequence

import ray

from ..errors import ConfigError, MatrixError
from ..sandbox import ExecResult, ToolRuntime
from ..specs import ToolRuntimeSpec
from .ray_errors import remote_error

log = logging.getLogger("matrix.runtime_service")


def _positive(cfg: Mapping[str, Any], key: str, default: float, cast=int, minimum: float = 1):
    value = cfg.get(key)
    try:
        value = cast(default if value is None else value)
    except (TypeError, ValueError):
        raise ConfigError(f"runtime.{key} must be a number, got {cfg.get(key)!r}") from None
    if value < minimum:
        raise ConfigError(f"runtime.{key} must be >= {minimum}, got {value}")
    return value


class RuntimeServiceImpl:
    def __init__(self, factory: Callable[[Mapping[str, Any]], ToolRuntime], config: Mapping[str, Any]):
        self.runtime: ToolRuntime | None = None
        self._broken: Exception | None = None
        self.max_sandboxes, self.max_concurrency, self.warm_pool, self.acquire_timeout_s = 1, 1, 0, 1.0
        try:  # a bad config is reported by start() as one line, not as a dead actor
            self.max_sandboxes = _positive(config, "max_sandboxes", 32)
            self.max_concurrency = _positive(config, "max_concurrency", 8)
            self.warm_pool = min(_positive(config, "warm_pool", 0, minimum=0), self.max_sandboxes)
            self.acquire_timeout_s = _positive(config, "acquire_timeout_s", 60.0, float, 0.001)
            self.runtime = factory(config)
        except Exception as exc:
            self._broken = exc
        self.leases: dict[tuple[str, str], asyncio.Future] = {}
        self.keys: dict[str, tuple[str, str]] = {}  # leased sandbox id -> its key
        self.pool: list[tuple[str, dict[str, Any]]] = []
        self.existing = 0  # sandboxes that exist or are being created: leased + pooled + in creation
        self.waiting = 0
        self.changed = asyncio.Condition()
        self.exec_slots = asyncio.Semaphore(self.max_concurrency)
        self.counts = {"created": 0, "released": 0, "execs": 0, "exec_s": 0.0, "from_pool": 0, "peak_leased": 0}
        self._started: asyncio.Task | None = None
        self._closed = False

    async def start(self) -> dict[str, Any]:
        if self._started is None:
            self._started = asyncio.ensure_future(self._start())
        await self._started
        return await self.stats()

    async def _start(self) -> None:
        if self._broken is not None:
            raise self._broken
        await self.runtime.start()
        await self._refill()

    # --- leases -----------------------------------------------------------------------
    async def acquire(self, task_id: str, name: str = "default") -> tuple[str, dict[str, Any]]:
        await self.start()
        if self._closed:
            raise MatrixError("the tool runtime is closed (the run is ending)")
        key = (str(task_id), str(name))
        lease = self.leases.get(key)
        if lease is None:
            lease = self.leases[key] = asyncio.ensure_future(self._lease(key))
        try:
            return await asyncio.shield(lease)
        except Exception:
            if self.leases.get(key) is lease:
                del self.leases[key]
            raise

    async def _lease(self, key: tuple[str, str]) -> tuple[str, dict[str, Any]]:
        deadline = time.monotonic() + self.acquire_timeout_s
        async with self.changed:
            self.waiting += 1
            try:
                while not self.pool and self.existing >= self.max_sandboxes:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise MatrixError(
                            f"no sandbox free within runtime.acquire_timeout_s={self.acquire_timeout_s:g}: "
                            f"all runtime.max_sandboxes={self.max_sandboxes} are leased"
                        )
                    try:
                        await asyncio.wait_for(self.changed.wait(), remaining)
                    except asyncio.TimeoutError:
                        pass
            finally:
                self.waiting -= 1
            if self.pool:
                sandbox_id, info = self.pool.pop()
                self.counts["from_pool"] += 1
            else:
                self.existing += 1
                sandbox_id = info = None
        if sandbox_id is None:
            sandbox_id, info = await self._create()
        self.keys[sandbox_id] = key
        self.counts["peak_leased"] = max(self.counts["peak_leased"], len(self.keys))
        asyncio.ensure_future(self._refill())
        return sandbox_id, info

    async def _create(self) -> tuple[str, dict[str, Any]]:
        """Creates one sandbox for a slot already counted in ``existing``."""
        sandbox_id = uuid.uuid4().hex[:12]
        try:
            info = await self.runtime.create(sandbox_id)
        except BaseException:
            await self._forget_slot()
            raise
        self.counts["created"] += 1
        return sandbox_id, info

    async def _forget_slot(self) -> None:
        async with self.changed:
            self.existing -= 1
            self.changed.notify_all()

    async def _refill(self) -> None:
        while not self._closed and not self.waiting and len(self.pool) < self.warm_pool and self.existing < self.max_sandboxes:
            self.existing += 1
            try:
                entry = await self._create()
            except Exception as exc:  # the next acquire creates its own and reports the error
                log.warning("warm pool: could not create a sandbox: %s", exc)
                return
            async with self.changed:
                self.pool.append(entry)
                self.changed.notify_all()

    async def release(self, sandbox_id: str) -> bool:
        key = self.keys.pop(sandbox_id, None)
        if key is None:
            return False
        self.leases.pop(key, None)
        await self._destroy(sandbox_id)
        asyncio.ensure_future(self._refill())
        return True

    async def release_tasks(self, task_ids: Sequence[str]) -> int:
        """Releases every sandbox of these tasks (the driver calls it when they are written)."""
        wanted = {str(t) for t in task_ids}
        pending = [(k, f) for k, f in self.leases.items() if k[0] in wanted]
        released = 0
        for key, lease in pending:
            try:
                sandbox_id, _ = await asyncio.shield(lease)
            except Exception:
                continue  # it never existed
            released += await self.release(sandbox_id)
        return released

    async def _destroy(self, sandbox_id: str) -> None:
        try:
            await self.runtime.destroy(sandbox_id)
        except Exception as exc:
            log.error("could not destroy sandbox %s: %s", sandbox_id, exc)
        self.counts["released"] += 1
        await self._forget_slot()

    def _leased(self, sandbox_id: str) -> None:
        if sandbox_id not in self.keys:
            raise MatrixError(f"sandbox {sandbox_id} is not leased (released when its task was written, or the runtime restarted)")

    # --- use ----------------------------------------------------------------------------
    async def exec(self, sandbox_id: str, command: Sequence[str] | str, stdin: bytes | None = None,
                   env: Mapping[str, str] | None = None, cwd: str | None = None, timeout_s: float | None = None) -> ExecResult:
        self._leased(sandbox_id)
        async with self.exec_slots:
            self._leased(sandbox_id)
            started = time.perf_counter()
            result = await self.runtime.exec(sandbox_id, command, stdin=stdin, env=env, cwd=cwd, timeout_s=timeout_s)
            self.counts["execs"] += 1
            self.counts["exec_s"] += time.perf_counter() - started
        return result

    async def read_file(self, sandbox_id: str, path: str) -> bytes:
        self._leased(sandbox_id)
        return await self.runtime.read_file(sandbox_id, path)

    async def write_file(self, sandbox_id: str, path: str, data: bytes) -> None:
        self._leased(sandbox_id)
        await self.runtime.write_file(sandbox_id, path, data)

    async def stats(self) -> dict[str, Any]:
        return {
            **self.counts,
            "leased": len(self.keys),
            "pooled": len(self.pool),
            "existing": self.existing,
            "max_sandboxes": self.max_sandboxes,
            "max_concurrency": self.max_concurrency,
            "pid": os.getpid(),
            **(self.runtime.census() if self.runtime else {}),
        }

    async def close(self) -> dict[str, Any]:
        """Destroys every sandbox (leased and pooled); the service refuses new leases."""
        self._closed = True
        for sandbox_id in list(self.keys):
            await self.release(sandbox_id)
        while self.pool:
            await self._destroy(self.pool.pop()[0])
        if self.runtime is not None:
            await self.runtime.close()
        return await self.stats()


# Restarted if its process dies (its sandboxes die with it: a restart cleans up and starts
# empty). A call in flight then fails rather than run a command twice.
RuntimeService = ray.remote(max_restarts=-1, max_task_retries=0)(RuntimeServiceImpl)


class RuntimeHandle:
    def __init__(self, actor, name: str):
        self.actor = actor
        self.name = name

    def release_tasks(self, task_ids: list[str]) -> None:
        self.actor.release_tasks.remote(task_ids)  # fire and forget: the driver never waits on it

    def stop(self) -> dict[str, Any] | None:
        try:
            return ray.get(self.actor.close.remote(), timeout=120)
        except Exception as exc:  # dead already, or Ray is going down: its sandboxes die with its process
            log.warning("tool runtime did not close cleanly: %s", exc)
            return None
        finally:
            try:
                ray.kill(self.actor)
            except Exception:
                pass


def start_runtime(spec: ToolRuntimeSpec, cfg: Mapping[str, Any], name: str) -> RuntimeHandle:
    """Starts the runtime service on this node (sandboxes run where the driver is)."""
    from ray.exceptions import RayActorError, RayTaskError
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    actor = RuntimeService.options(
        name=name, num_cpus=0, max_concurrency=10_000,
        scheduling_strategy=NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False),
    ).remote(spec.factory, dict(cfg))
    handle = RuntimeHandle(actor, name)
    try:
        ray.get(actor.start.remote())
    except (RayTaskError, RayActorError) as exc:
        try:
            ray.kill(actor)
        except Exception:
            pass
        raise remote_error(exc, f"tool runtime {spec.name!r} failed to start: ") from None
    return handle
