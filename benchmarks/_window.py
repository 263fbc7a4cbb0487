"""Steady-state measurement of a run from the outside: samples, while the run goes, how many
records its output file holds, the CPU time and memory of a process tree, and the load average.

Rates are taken over the steady-state window, from when 10 % of the tasks are written to when
90 % are: start-up (actors, imports) and the drain of the last long tasks fall outside it.
The same sampler measures every system, ours and the baselines, so the window is the same rule.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import psutil

LOW, HIGH = 0.10, 0.90


class Window:
    def __init__(self, output: str | Path, root: int | None = None, interval_s: float = 0.25, memory_every: int = 4,
                 exclude: frozenset[int] = frozenset()):
        self.output, self.root, self.interval_s, self.memory_every = Path(output), root, interval_s, memory_every
        self.exclude = exclude  # pids in the tree that are not the system measured (a shared LLM server)
        self.samples: list[tuple[float, int, float, float]] = []  # (time, records, cpu_s, load1)
        self.peak_pss = 0
        self._lines, self._offset = 0, 0
        self._cpu_first: dict[int, float] = {}
        self._cpu_last: dict[int, float] = {}
        self.labels: dict[int, str] = {}  # pid -> what it is: the driver, a Ray actor class, or Ray's own processes
        self.by_label: list[tuple[float, dict[str, float]]] = []  # (time, CPU seconds so far per label)
        self._stop = threading.Event()

    def _tree(self) -> list[psutil.Process]:
        try:
            top = psutil.Process(self.root)
            return [p for p in (top, *top.children(recursive=True)) if p.pid not in self.exclude]
        except psutil.NoSuchProcess:
            return []

    def _count(self) -> int:
        try:
            with open(self.output, "rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return self._lines
        # Only whole lines count: a record is written when its newline is.
        complete = chunk.rfind(b"\n") + 1
        self._lines += chunk.count(b"\n", 0, complete)
        self._offset += complete
        return self._lines

    def _cpu(self, procs: list[psutil.Process]) -> float:
        for proc in procs:
            try:
                t = proc.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            self._cpu_first.setdefault(proc.pid, t.user + t.system if not self.samples else 0.0)
            self._cpu_last[proc.pid] = t.user + t.system
            if self.labels.get(proc.pid) not in (None, "driver") and not self.labels[proc.pid].startswith(("IDLE", "ray system")):
                continue
            # A Ray worker starts as a plain python process, idles as ray::IDLE and takes its
            # actor's name when it gets one: it is labelled again until it has that name.
            self.labels[proc.pid] = _label(proc, self.root)
        per: dict[str, float] = {}
        for pid, last in self._cpu_last.items():
            per[self.labels.get(pid, "other")] = per.get(self.labels.get(pid, "other"), 0.0) + last - self._cpu_first[pid]
        self.by_label.append((time.time(), per))
        return sum(per.values())

    def _pss(self, procs: list[psutil.Process]) -> int:
        total = 0
        for proc in procs:
            try:
                total += proc.memory_full_info().pss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return total

    def sample(self) -> None:
        procs = self._tree()
        if len(self.samples) % self.memory_every == 0:
            self.peak_pss = max(self.peak_pss, self._pss(procs))
        self.samples.append((time.time(), self._count(), self._cpu(procs), os.getloadavg()[0]))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> "Window":
        self.sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def result(self, total: int) -> dict[str, Any]:
        """Steady-state rates for a run of ``total`` tasks (falls back to the whole run when too short)."""
        s = self.samples
        first = next((x for x in s if x[1] > 0), s[-1])
        lo = next((x for x in s if x[1] >= LOW * total), first)
        hi = next((x for x in s if x[1] >= HIGH * total), s[-1])
        if hi[0] - lo[0] < 4 * self.interval_s:  # too few samples in the window: first record to last
            lo, hi = first, s[-1]
        span = max(hi[0] - lo[0], 1e-9)
        inside = [x for x in s if lo[0] <= x[0] <= hi[0]]
        return {
            "steady_tasks_per_s": (hi[1] - lo[1]) / span if hi[1] > lo[1] else total / max(s[-1][0] - s[0][0], 1e-9),
            "window_s": span,
            "window_tasks": hi[1] - lo[1],
            "cpu_cores_in_window": (hi[2] - lo[2]) / span,
            "cpu_s_total": s[-1][2],
            "peak_pss_mb": self.peak_pss / 2**20,
            "load_avg_in_window": sum(x[3] for x in inside) / max(1, len(inside)),
            "records": s[-1][1],
        }

    def between(self, start: float, end: float) -> dict[str, Any]:
        """CPU cores used and mean load average between two times inside the run (its own window)."""
        inside = [x for x in self.samples if start <= x[0] <= end] or self.samples[-1:]
        lo = max((x for x in self.samples if x[0] <= start), default=self.samples[0], key=lambda x: x[0])
        hi = min((x for x in self.samples if x[0] >= end), default=self.samples[-1], key=lambda x: x[0])
        return {"cpu_cores_in_window": (hi[2] - lo[2]) / max(hi[0] - lo[0], 1e-9), "peak_pss_mb": self.peak_pss / 2**20,
                "load_avg_in_window": sum(x[3] for x in inside) / len(inside)}


def _label(proc: psutil.Process, root: int | None) -> str:
    try:
        if proc.pid == (root or os.getpid()):
            return "driver"
        title = (proc.cmdline() or [""])[0]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "other"
    if title.startswith("ray::"):  # a Ray worker names itself after the actor class it hosts
        return title.split()[0][5:].split(":")[-1].split(".")[0] or "ray worker"  # ray::[actor name:]Class[.method]
    return "ray system"


def cpu_by_label_between(window: "Window", start: float, end: float) -> dict[str, float]:
    """CPU seconds per process label spent between two times of the run."""
    series = window.by_label
    lo = max((x for x in series if x[0] <= start), default=series[0], key=lambda x: x[0])
    hi = min((x for x in series if x[0] >= end), default=series[-1], key=lambda x: x[0])
    return {k: v - lo[1].get(k, 0.0) for k, v in hi[1].items()}


def steady_window(finish_times: list[float]) -> tuple[float, float, int]:
    """(start, end, tasks finished inside) of the steady-state window of a run's finish times."""
    ends = sorted(finish_times)
    lo, hi = int(LOW * (len(ends) - 1)), int(HIGH * (len(ends) - 1))
    return ends[lo], ends[hi], hi - lo
