"""Peak memory and CPU time of the whole local Ray cluster: the driver and every process under it."""
from __future__ import annotations

import threading

import psutil


def _processes(root: int | None = None) -> list[psutil.Process]:
    try:
        me = psutil.Process(root)
        return [me, *me.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cluster_pss_bytes(root: int | None = None) -> int:
    total = 0
    for proc in _processes(root):
        try:
            total += proc.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


class PeakMemory:
    """Samples :func:`cluster_pss_bytes` in a thread while the ``with`` block runs.

    It also tracks each process's CPU time, so ``cpu_s`` counts processes that started or
    exited during the block (a run's actors) up to their last sample.
    """

    def __init__(self, interval_s: float = 0.5, root: int | None = None):
        self.interval_s, self.root = interval_s, root  # root: the process whose tree is measured (default: this one)
        self.peak = 0
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._stop = threading.Event()

    def _cpu(self) -> None:
        for proc in _processes(self.root):
            try:
                t = proc.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            # A process first seen after the start began during the block: all its CPU counts.
            self._first.setdefault(proc.pid, t.user + t.system if not self._last_started else 0.0)
            self._last[proc.pid] = t.user + t.system

    def __enter__(self) -> "PeakMemory":
        self._last_started = False
        self._cpu()
        self._last_started = True
        self.baseline = cluster_pss_bytes(self.root)
        self.peak = self.baseline
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, cluster_pss_bytes(self.root))
            self._cpu()

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, cluster_pss_bytes(self.root))
        self._cpu()

    @property
    def cpu_s(self) -> float:
        return sum(self._last[k] - self._first[k] for k in self._last)
