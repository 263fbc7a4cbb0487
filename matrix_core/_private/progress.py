"""Progress on stderr: a live rich view per role on a terminal (live.py), a plain line every few seconds otherwise."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field


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
    turn_tokens: int = 0  # tokens of finished turns, polled from the hosts (live.HostPoller)
    roles: dict = field(default_factory=dict)  # per-role counts from the hosts
    started: float = field(default_factory=time.perf_counter)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def rate(self, value: float) -> float:
        return value / self.elapsed if self.elapsed > 0 else 0.0


class Progress:
    def __init__(self, counters: Counters, mode: str = "auto", interval_s: float = 5.0):
        self.c = counters
        self.tty = sys.stderr.isatty() if mode == "auto" else mode == "bar"
        self.enabled = mode != "off"
        self.interval_s = 0.2 if self.tty else interval_s
        self._last = 0.0
        self.live = None

    def line(self) -> str:
        c = self.c
        finished = c.done + c.failed
        total = f"/{c.total - c.skipped}" if c.total is not None else ""
        return (
            f"tasks {finished}{total} (done {c.done}, failed {c.failed}, in flight {c.in_flight}) "
            f"| {c.rate(finished):.1f} tasks/s | {c.rate(max(c.tokens, c.turn_tokens)):.0f} tokens/s | {c.elapsed:.0f}s"
        )

    def update(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not self.enabled or (not force and now - self._last < self.interval_s):
            return
        self._last = now
        if self.tty:
            from .live import LiveView

            self.live = self.live or LiveView(self.c, sys.stderr)
            self.live.update()
        else:
            sys.stderr.write(self.line() + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            self.update(force=True)
            if self.live is not None:
                self.live.close()
