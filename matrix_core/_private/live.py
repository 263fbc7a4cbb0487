"""The live view of a run on a terminal, and the host polling behind it.

The driver only sees tasks when the sink writes them, so tokens/s read 0 until the first
task finished. Instead it polls every agent host's per-role counters (:meth:`AgentHost.live_stats`,
one cheap Ray call per host and refresh): tokens count as each turn ends, and every role
shows its queue, in-flight steps and step latency while the run goes on.
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Mapping

POLL_TIMEOUT_S = 5.0
COUNT_LINES_UP_TO_BYTES = 1 << 30  # counting the rows of a dataset file beyond this costs too much


def expected_tasks(cfg: Mapping[str, Any]) -> int | None:
    """Tasks the run will see, when the dataset says (``size``, ``limit``, a local file's rows)."""
    dataset = cfg.get("dataset") or {}
    trials = int((cfg.get("run") or {}).get("trials", 1) or 1)
    rows = dataset.get("size") if dataset.get("loader") == "range" else None
    path = dataset.get("path")
    if rows is None and path and dataset.get("loader") in ("jsonl", "csv"):
        p = Path(str(path)).expanduser()
        try:
            if p.is_file() and p.stat().st_size <= COUNT_LINES_UP_TO_BYTES:
                with p.open("rb") as f:
                    rows = sum(1 for line in f if line.strip()) - (dataset.get("loader") == "csv")
        except OSError:
            rows = None
    if dataset.get("limit") is not None:
        rows = int(dataset["limit"]) if rows is None else min(int(rows), int(dataset["limit"]))
    return None if rows is None else int(rows) * trials


class HostPoller:
    """Sums the hosts' per-role counters into ``counters.roles`` every ``every_s``."""

    def __init__(self, hosts: list, every_s: float):
        self.hosts = hosts
        self.every_s = max(every_s, 0.5)
        self._last = 0.0
        self._per_host: dict[int, dict[str, dict[str, Any]]] = {}

    async def poll(self, counters, force: bool = False) -> None:
        now = time.monotonic()
        if (not force and now - self._last < self.every_s) or not self.hosts:
            return
        self._last = now
        futures = [asyncio.ensure_future(_await(h.live_stats.remote())) for h in self.hosts]
        await asyncio.wait(futures, timeout=POLL_TIMEOUT_S)
        for i, fut in enumerate(futures):
            if not fut.done():
                fut.cancel()
            elif fut.exception() is None:
                self._per_host[i] = fut.result()  # a host that did not answer keeps its last numbers
        roles: dict[str, dict[str, Any]] = {}
        for stats in self._per_host.values():
            for role, s in stats.items():
                total = roles.setdefault(role, dict.fromkeys(s, 0))
                for key, value in s.items():
                    total[key] += value
        counters.roles = roles
        counters.turn_tokens = sum(r["tokens"] for r in roles.values())


async def _await(ref):
    return await ref


class LiveView:
    """A rich display on a terminal: totals, rates, ETA, and one line per role."""

    def __init__(self, counters, stream):
        from rich.console import Console
        from rich.live import Live

        self.c = counters
        self.console = Console(file=stream, force_terminal=True)
        self.live = Live(console=self.console, auto_refresh=False, transient=False, redirect_stdout=False, redirect_stderr=False)
        self._window: tuple[float, dict[str, tuple[int, float]]] = (time.perf_counter(), {})
        self._latency: dict[str, float] = {}
        self.live.start()

    def headline(self) -> str:
        c = self.c
        finished = c.done + c.failed
        total = c.total - c.skipped if c.total is not None else None
        tokens = max(c.tokens, getattr(c, "turn_tokens", 0))
        eta = ""
        if total is not None:
            rate = c.rate(finished)
            left = max(total - finished, 0)
            eta = f" | ETA {_duration(left / rate)}" if rate > 0 and left else (" | ETA -" if left else "")
        return (
            f"tasks {finished}{f'/{total}' if total is not None else ''} | done {c.done} | failed {c.failed} | "
            f"in flight {c.in_flight} | {c.rate(finished):.1f} tasks/s | {c.rate(tokens):.0f} tokens/s | "
            f"{_duration(c.elapsed)}{eta}"
        )

    def _latencies(self) -> dict[str, float]:
        """Mean step latency per role over the last few seconds (cumulative until then)."""
        started, base = self._window
        now = time.perf_counter()
        roles = getattr(self.c, "roles", {}) or {}
        for role, s in roles.items():
            out, step_s = base.get(role, (0, 0.0))
            if s["out"] > out:
                self._latency[role] = (s["step_s"] - step_s) / (s["out"] - out)
        if now - started > 5.0:
            self._window = (now, {role: (s["out"], s["step_s"]) for role, s in roles.items()})
        return self._latency

    def render(self):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, pad_edge=False)
        for column in ("role", "queue", "in flight", "in", "out", "failed", "step latency", "tokens/s"):
            table.add_column(column, justify="left" if column == "role" else "right")
        latencies = self._latencies()
        for role, s in sorted((getattr(self.c, "roles", {}) or {}).items()):
            latency = latencies.get(role)
            table.add_row(
                role, str(s["queue"]), str(s["in_flight"]), str(s["in"]), str(s["out"]), str(s["failed"]),
                f"{latency:.2f}s" if latency is not None else "-", f"{self.c.rate(s['tokens']):.0f}",
            )
        return Group(Text(self.headline(), no_wrap=True, overflow="ellipsis"), table)

    def update(self) -> None:
        self.live.update(self.render(), refresh=True)

    def close(self) -> None:
        self.update()
        self.live.stop()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
