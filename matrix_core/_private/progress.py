"""Progress on stderr: a live rich bar on a terminal, a plain line every few seconds otherwise."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Counters:
    total: int | None = None
    done: int = 0
    failed: int = 0
    skipped: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    hops: int = 0
    tokens: int = 0
    started: float = field(default_factory=time.perf_counter)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def rate(self, value: float) -> float:
        return value / self.elapsed if self.elapsed > 0 else 0.0


class Progress:
    """``mode``: auto (a bar on a terminal, lines otherwise), bar, lines or off."""

    def __init__(self, counters: Counters, mode: str = "auto", interval_s: float = 5.0):
        self.c = counters
        self.tty = sys.stderr.isatty() if mode == "auto" else mode == "bar"
        self.enabled = mode != "off"
        self.interval_s = 0.2 if self.tty else interval_s
        self._last = 0.0
        self._bar: Any = None

    def rates(self) -> str:
        c = self.c
        return f"{c.rate(c.done + c.failed):.1f} tasks/s | {c.rate(c.tokens):.0f} tokens/s"

    def line(self) -> str:
        c = self.c
        finished = c.done + c.failed
        total = f"/{c.total}" if c.total is not None else ""
        return (
            f"tasks {finished}{total} (done {c.done}, failed {c.failed}, in flight {c.in_flight}) "
            f"| {self.rates()} | {c.elapsed:.0f}s"
        )

    def update(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not self.enabled or (not force and now - self._last < self.interval_s):
            return
        self._last = now
        if not self.tty:
            sys.stderr.write(self.line() + "\n")
            sys.stderr.flush()
            return
        if self._bar is None:
            self._bar = _start_bar()
        c = self.c
        detail = f"done {c.done}, failed {c.failed}, in flight {c.in_flight} | {self.rates()}"
        self._bar.update(0, completed=c.done + c.failed, total=c.total, detail=detail)
        self._bar.refresh()

    def close(self) -> None:
        if self.enabled:
            self.update(force=True)
            if self._bar is not None:
                self._bar.stop()
                self._bar = None


def _start_bar() -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as RichProgress

    # Refreshed by update() only: no extra thread, and the driver decides how often.
    bar = RichProgress(
        TextColumn("tasks"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True, force_terminal=True),
        auto_refresh=False,
    )
    bar.add_task("tasks", total=None, detail="")
    bar.start()
    return bar
