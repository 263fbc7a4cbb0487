"""Starting a local Ray on a busy machine.

Ray gives its raylet a fixed 30 s to register with the GCS; on a loaded machine (CI running
several suites, a shared workstation) that is sometimes not enough and ``ray.init`` fails
although nothing is wrong. The run then tries again, after ending the processes the failed
attempt started (its own children, found by parentage, never by name).
"""
from __future__ import annotations

import logging
from typing import Any

import psutil
import ray

log = logging.getLogger("matrix.driver")

ATTEMPTS = 3


def _descendants() -> dict[int, psutil.Process]:
    try:
        return {p.pid: p for p in psutil.Process().children(recursive=True)}
    except psutil.Error:
        return {}


def init_local(kwargs: dict[str, Any]) -> None:
    for attempt in range(1, ATTEMPTS + 1):
        before = set(_descendants())
        try:
            ray.init(**kwargs)
            return
        except Exception as exc:  # Ray raises a bare Exception for this
            if "timed out during startup" not in str(exc) or attempt == ATTEMPTS:
                raise
            log.warning("local Ray did not come up in time (attempt %d of %d; a busy machine?): trying again", attempt, ATTEMPTS)
            ray.shutdown()
            started = [p for pid, p in _descendants().items() if pid not in before]
            for p in started:
                try:
                    p.kill()
                except psutil.Error:
                    pass
            psutil.wait_procs(started, timeout=30)
