"""Shared by the suites: repeated measurements, the simulated LLM, CPU accounting, output."""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import psutil

RESULTS = Path(__file__).parent / "results"


def spread(values: Iterable[float]) -> dict[str, float]:
    """Median with min and max: how every repeated number is reported."""
    vals = sorted(float(v) for v in values)
    return {"median": statistics.median(vals), "min": vals[0], "max": vals[-1], "n": len(vals)}


def fmt(s: Mapping[str, float] | float, digits: int = 0) -> str:
    if not isinstance(s, Mapping):
        return f"{s:.{digits}f}"
    if s["n"] == 1:
        return f"{s['median']:.{digits}f}"
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}-{s['max']:.{digits}f}]"


def cluster_cpu_s() -> float:
    """User + system CPU seconds of this process and every process under it (the local Ray)."""
    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


class SimLLM:
    """One simllm replica as a Ray actor; ``delta()`` reads its counters since the last call."""

    def __init__(self, **overrides: Any):
        import ray
        from matrix_plugin_simllm import settings
        from matrix_plugin_simllm.server import SimLLMReplica

        self.settings = settings(overrides)
        self.actor = ray.remote(SimLLMReplica).options(num_cpus=0).remote(self.settings, 0)
        info = ray.get(self.actor.start.remote("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{info['port']}/v1"
        self.pid = info["pid"]
        self._last = self.stats()

    def stats(self) -> dict[str, Any]:
        import ray

        return ray.get(self.actor.stats.remote())

    def delta(self) -> dict[str, float]:
        now = self.stats()
        keys = ("completed", "slot_seconds", "latency_sum_s", "generated_tokens", "prompt_tokens", "simulated_s")
        out = {k: now[k] - self._last[k] for k in keys}
        self._last = now
        return out

    def close(self) -> None:
        import ray

        ray.kill(self.actor)


def machine() -> dict[str, Any]:
    import ray

    try:
        cpu_model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu_model = platform.processor()
    return {"cpus": os.cpu_count(), "cpu_model": cpu_model, "memory_gib": round(psutil.virtual_memory().total / 2**30),
            "python": platform.python_version(), "ray": ray.__version__, "platform": platform.platform(),
            "load_avg_at_start": [round(x, 1) for x in os.getloadavg()]}


def table(rows: list[dict], columns: list[tuple[str, str, Callable[[dict], str]]]) -> str:
    """A Markdown table; ``columns`` are (key, header, formatter)."""
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(f(r) for _, _, f in columns) + " |" for r in rows]
    return "\n".join(lines)


def save(suite: str, result: dict[str, Any], figure=None) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{suite}.json"
    path.write_text(json.dumps(result, indent=2, default=float))
    if figure is not None:
        figure.savefig(RESULTS / f"{suite}.png", dpi=110, bbox_inches="tight")
        import matplotlib.pyplot as plt

        plt.close(figure)
    return path


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, wall seconds, cluster CPU seconds) of one call."""
    cpu0, t0 = cluster_cpu_s(), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0, cluster_cpu_s() - cpu0
