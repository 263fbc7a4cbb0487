"""Tool runtimes: sandboxes where agents run code and commands.

A plugin implements :class:`ToolRuntime` (one process-local object that creates, runs and
destroys sandboxes) and registers it with a :class:`~matrix_core.ToolRuntimeSpec`. The
driver starts the configured runtime (``runtime=NAME``) inside one shared Ray actor, which
owns every sandbox, leases them by task id, keeps a warm pool and enforces the runtime's
limits. Agents reach it through ``self.runtime`` (a :class:`RuntimeClient`)::

    class Executor(Agent):
        uses_runtime = True

        async def step(self, orch):
            box = await self.runtime.acquire(orch.task_id)   # the same sandbox on every step of this task
            await box.write_file("main.py", code)
            result = await box.exec(["python3", "main.py"], stdin="3 4\\n", timeout_s=5)
            orch.state["out"] = result.to_dict()

A task's sandboxes are released when the task is written (done or failed) and all of them
at the end of the run; a runtime also removes what a crashed earlier run left behind.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence


@dataclass
class ExecResult:
    """What one command did. ``killed`` says why the runtime stopped it, if it did."""

    exit_code: int | None
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0
    timed_out: bool = False
    output_truncated: bool = False
    killed: str | None = None  # "timeout" | "output_limit" | "work_quota" | None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.killed is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ToolRuntime:
    """A sandbox backend. Runs inside the runtime service actor; every method is async.

    ``config`` is the ``runtime`` config section. Sandbox ids are chosen by the service.
    Methods raise :class:`matrix_core.MatrixError` with one readable line on failure.
    """

    def __init__(self, config: Mapping[str, Any]):
        self.config = dict(config)

    async def start(self) -> None:
        """Check the backend is usable and remove what crashed earlier runs left behind."""

    async def create(self, sandbox_id: str) -> dict[str, Any]:
        """Make a fresh sandbox with an empty work dir; returns facts about it (paths, image)."""
        raise NotImplementedError

    async def exec(self, sandbox_id: str, command: Sequence[str] | str, *, stdin: bytes | None = None,
                   env: Mapping[str, str] | None = None, cwd: str | None = None,
                   timeout_s: float | None = None) -> ExecResult:
        """Run ``command`` (argv, or a shell string) in the sandbox's work dir (``cwd`` relative to it)."""
        raise NotImplementedError

    async def read_file(self, sandbox_id: str, path: str) -> bytes:
        raise NotImplementedError

    async def write_file(self, sandbox_id: str, path: str, data: bytes) -> None:
        raise NotImplementedError

    async def destroy(self, sandbox_id: str) -> None:
        """Stop everything running in the sandbox and delete its work dir. Idempotent."""
        raise NotImplementedError

    async def close(self) -> None:
        """Destroy every sandbox this runtime made."""

    def census(self) -> dict[str, int]:
        """What exists now (live processes, work dirs): for leak checks and ``stats``."""
        return {}


async def _call(method, *args):
    """Awaits a service call; a MatrixError raised there comes back as itself (one line)."""
    from ray.exceptions import RayActorError, RayTaskError

    from ._private.ray_errors import remote_error
    from .errors import MatrixError

    try:
        return await method.remote(*args)
    except RayTaskError as exc:
        raise remote_error(exc, "tool runtime: ") from None
    except RayActorError as exc:
        raise MatrixError(f"the tool runtime service died during the call ({type(exc).__name__}); it restarts, retry the task") from None


class Sandbox:
    """An agent's handle on one leased sandbox (picklable: it may travel with a task)."""

    def __init__(self, service, sandbox_id: str, info: Mapping[str, Any] | None = None):
        self._service = service
        self.id = sandbox_id
        self.info = dict(info or {})

    async def exec(self, command: Sequence[str] | str, *, stdin: str | bytes | None = None,
                   env: Mapping[str, str] | None = None, cwd: str | None = None,
                   timeout_s: float | None = None) -> ExecResult:
        data = stdin.encode() if isinstance(stdin, str) else stdin
        return await _call(self._service.exec, self.id, command, data, dict(env or {}), cwd, timeout_s)

    async def run_python(self, code: str, *, stdin: str | bytes | None = None, timeout_s: float | None = None,
                         filename: str = "main.py", args: Sequence[str] = ()) -> ExecResult:
        await self.write_file(filename, code)
        return await self.exec(["python3", filename, *args], stdin=stdin, timeout_s=timeout_s)

    async def read_file(self, path: str) -> bytes:
        return await _call(self._service.read_file, self.id, path)

    async def write_file(self, path: str, data: str | bytes) -> None:
        await _call(self._service.write_file, self.id, path, data.encode() if isinstance(data, str) else data)

    async def release(self) -> None:
        await _call(self._service.release, self.id)


class RuntimeClient:
    """``Agent.runtime``: leases sandboxes from the run's runtime service, keyed by task id."""

    def __init__(self, service):
        self._service = service

    async def acquire(self, task_id: str, name: str = "default") -> Sandbox:
        """The task's sandbox called ``name``; created (or taken from the warm pool) on first use.

        Every agent that asks for the same task and name gets the same sandbox, so its
        files persist across steps, agents and processes until the task is written.
        """
        sandbox_id, info = await _call(self._service.acquire, task_id, name)
        return Sandbox(self._service, sandbox_id, info)

    async def release_task(self, task_id: str) -> None:
        await _call(self._service.release_tasks, [task_id])

    async def stats(self) -> dict[str, Any]:
        return await _call(self._service.stats)


def runtime_client(run_config: Mapping[str, Any]) -> RuntimeClient:
    """The client for the service the driver started (named in ``runtime.service``)."""
    import ray

    from .errors import ConfigError

    section = run_config.get("runtime") or {}
    if not section.get("service"):
        raise ConfigError("this agent needs a tool runtime but the run has none; set runtime=NAME (e.g. runtime=sandbox)")
    return RuntimeClient(ray.get_actor(section["service"]))
