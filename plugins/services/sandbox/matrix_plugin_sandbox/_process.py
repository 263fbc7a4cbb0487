"""Running one host command with a wall-clock limit and a cap on its output."""
from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any, Awaitable, Callable, Mapping, Sequence

from matrix_core import MatrixError
from matrix_core.sandbox import ExecResult


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def run_bounded(argv: Sequence[str], *, stdin: bytes | None, env: Mapping[str, str] | None, timeout_s: float,
                      max_output_bytes: int, on_kill: Callable[[], Awaitable[None]] | None = None,
                      running: set | None = None, pass_fds: Sequence[int] = ()) -> ExecResult:
    """Runs ``argv`` in its own session. On timeout or once either stream passes
    ``max_output_bytes`` the whole process group is killed (and ``on_kill`` runs, for
    backends whose processes live elsewhere); what was read so far is kept."""
    if isinstance(stdin, str):
        stdin = stdin.encode()
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=dict(env) if env is not None else None,
        start_new_session=True, pass_fds=tuple(pass_fds),
    )
    if running is not None:
        running.add(proc)
    overflow = asyncio.Event()
    buffers = (bytearray(), bytearray())

    async def drain(stream: asyncio.StreamReader, buf: bytearray) -> None:
        total = 0
        while chunk := await stream.read(1 << 16):
            total += len(chunk)
            buf += chunk[: max(0, max_output_bytes - len(buf))]
            if total > max_output_bytes:
                overflow.set()  # keep reading (and dropping) until the kill closes the pipe

    async def feed() -> None:
        try:
            proc.stdin.write(stdin)
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the command did not read all of it
        finally:
            proc.stdin.close()

    tasks = [asyncio.ensure_future(drain(proc.stdout, buffers[0])), asyncio.ensure_future(drain(proc.stderr, buffers[1]))]
    if stdin is not None:
        tasks.append(asyncio.ensure_future(feed()))
    finished = asyncio.ensure_future(asyncio.gather(proc.wait(), *tasks[:2]))
    overflowed = asyncio.ensure_future(overflow.wait())
    killed = None
    try:
        done, _ = await asyncio.wait({finished, overflowed}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        if finished not in done:
            killed = "output_limit" if overflowed in done else "timeout"
    finally:
        if killed is not None or not finished.done():
            _killpg(proc.pid)
            if on_kill is not None:
                await on_kill()
        overflowed.cancel()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except asyncio.TimeoutError:
            pass
        for t in tasks:
            t.cancel()
        finished.cancel()
        await asyncio.gather(finished, *tasks, return_exceptions=True)
        transport = getattr(proc, "_transport", None)
        if transport is not None:  # pipes we stopped reading: close them while the loop runs
            transport.close()
        if running is not None:
            running.discard(proc)
    code = proc.returncode
    return ExecResult(
        exit_code=None if killed else code,
        stdout=buffers[0].decode(errors="replace"),
        stderr=buffers[1].decode(errors="replace"),
        duration_s=time.perf_counter() - started,
        timed_out=killed == "timeout",
        output_truncated=killed == "output_limit",
        killed=killed,
    )


def exec_request(command: Sequence[str] | str, cwd: str | None, timeout_s: float | None,
                 settings: Mapping[str, Any]) -> tuple[list[str], str, float]:
    """An exec call as both runtimes run it: argv (a string goes to sh), a cwd confined to
    ``/work`` (``..`` cannot climb out), and the timeout capped by ``max_timeout_s``."""
    if isinstance(command, str):
        command = ["/bin/sh", "-c", command]
    if not command:
        raise MatrixError("exec: empty command")
    timeout = min(float(timeout_s or settings["timeout_s"]), settings["max_timeout_s"])
    parts = [p for p in str(cwd or "").removeprefix("/work").split("/") if p not in ("", ".", "..")]
    return list(command), "/work/" + "/".join(parts) if parts else "/work", timeout
