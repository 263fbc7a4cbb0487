"""Peak memory of the whole local Ray cluster: PSS of the driver and every process under it."""
from __future__ import annotations

import threading

import psutil


def cluster_pss_bytes() -> int:
    me = psutil.Process()
    total = 0
    for proc in [me, *me.children(recursive=True)]:
        try:
            total += proc.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


class PeakMemory:
    """Samples :func:`cluster_pss_bytes` in a thread while the ``with`` block runs."""

    def __init__(self, interval_s: float = 0.5):
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> "PeakMemory":
        self.baseline = cluster_pss_bytes()
        self.peak = self.baseline
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, cluster_pss_bytes())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, cluster_pss_bytes())
