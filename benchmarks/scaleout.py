"""Suite ``scaleout``: where peer-to-peer should win, the control plane scaling out.

The LLM is fast and in-process (the simllm engine behind an httpx transport in each process
that calls it, unbounded batch, 32-token replies taking 0.32 s), and every task of the
dataset's stream (10,000 of 30,000 by default) is in flight at once, each a chat of ``TURNS`` turns. The LLM would
allow tasks / 0.32 s calls/s, far above what 2 cores can drive, so the client and routing
CPU is the bottleneck. Measured, in random order, steady-state window:

- ``controller``: one asyncio process (the driver) running every task's chain with
  ``LLMClient`` over the same in-process engine: capped at one core whatever the cluster.
- ``matrix, H hosts``: ``bench_chat`` with ``run.hosts=H`` (H = 1, 2, 4): each host a Ray actor
  process with its own engine; the driver only injects tasks and counts completions.

CPU per call is split by process (driver, agent hosts, sink, Ray's own) from the sampled CPU
times, which is what the 32-node extrapolation in the doc is computed from.
"""
from __future__ import annotations

import asyncio
import os
import random
import statistics
import tempfile
import time
from typing import Any

from ._common import fmt, spread
from ._window import Window, cpu_by_label_between, steady_window

TURNS, TOKENS = 4, 32


def run_controller(tasks: int, in_flight: int) -> dict[str, Any]:
    from matrix_core import Endpoint, LLMClient

    from ._simtransport import SimTransport
    from .workload import messages_for

    async def main() -> list[tuple[float, float]]:
        llm = LLMClient([Endpoint(base_url="sim://llm/v1", model="simllm")], max_concurrency_per_endpoint=in_flight, timeout_s=600,
                        max_retries=0, transport=SimTransport())
        gate = asyncio.Semaphore(in_flight)
        try:
            async def chain() -> tuple[float, float]:
                async with gate:
                    t0, replies = time.time(), []
                    for _ in range(TURNS):
                        replies.append((await llm.chat(messages_for(replies), max_tokens=TOKENS)).content)
                    return t0, time.time()

            return await asyncio.gather(*(chain() for _ in range(tasks)))
        finally:
            await llm.aclose()

    with Window(os.devnull) as window:
        spans = asyncio.run(main())
    w0, w1, inside = steady_window([e for _, e in spans])
    return _result(window, w0, w1, inside, tasks)


def run_matrix(tasks: int, in_flight: int, hosts: int) -> dict[str, Any]:
    import matrix_core

    from .workload import register

    register()
    with tempfile.TemporaryDirectory() as tmp:
        out = f"{tmp}/out.jsonl"
        with Window(out) as window:
            summary = matrix_core.run("bench_chat", [
                f"output.path={out}", "run.progress=off", "llm=bench_sim", f"run.hosts={hosts}", f"dataset.size={tasks}",
                f"run.max_concurrent_tasks={in_flight}", f"agents.chat.max_in_flight={in_flight}",
                f"shape.turns_mean={TURNS}", "shape.turns_sigma=0", f"shape.tokens_mean={TOKENS}", "shape.tokens_sigma=0"])
    assert summary.failed == 0 and summary.hops == TURNS * tasks, summary
    s = window.samples
    lo = next(x for x in s if x[1] >= 0.1 * tasks)
    hi = next((x for x in s if x[1] >= 0.9 * tasks), s[-1])
    return _result(window, lo[0], hi[0], hi[1] - lo[1], tasks)


def _result(window: Window, w0: float, w1: float, inside: int, tasks: int) -> dict[str, Any]:
    if w1 - w0 < 8 * window.interval_s:  # too short a window for the samples (a small run): the whole run
        w0, w1, inside = window.samples[0][0], window.samples[-1][0], tasks
    span = max(w1 - w0, 1e-9)
    calls = inside * TURNS
    cpu = cpu_by_label_between(window, w0, w1)
    total = sum(cpu.values())
    hosts = sum(v for k, v in cpu.items() if k.startswith("AgentHost"))
    return {
        "hops_per_s": calls / span, "tasks_per_s": inside / span,
        "cpu_cores": total / span,
        "cpu_ms_per_hop": 1000 * total / max(calls, 1),
        "host_cpu_ms_per_hop": 1000 * hosts / max(calls, 1),
        "driver_cpu_ms_per_hop": 1000 * cpu.get("driver", 0.0) / max(calls, 1),
        "rest_cpu_ms_per_hop": 1000 * (total - hosts - cpu.get("driver", 0.0)) / max(calls, 1),
        "cpu_by_process_s": cpu, "peak_pss_mb": window.peak_pss / 2**20,
        "load_avg": statistics.mean(x[3] for x in window.samples if w0 <= x[0] <= w1) if any(w0 <= x[0] <= w1 for x in window.samples) else os.getloadavg()[0],
        "window_s": span,
    }


METRICS = ("hops_per_s", "tasks_per_s", "cpu_cores", "cpu_ms_per_hop", "host_cpu_ms_per_hop", "driver_cpu_ms_per_hop", "rest_cpu_ms_per_hop",
           "peak_pss_mb", "load_avg")


def suite_scaleout(quick: bool, repeats: int, tasks: int | None = None, hosts: tuple[int, ...] | None = None) -> dict[str, Any]:
    # A stream, not one wave: in_flight tasks at once out of 3x as many, so the steady-state
    # window (10 % to 90 % of the tasks done) sees tasks start as others finish.
    tasks = max(tasks or (900 if quick else 30000), 3)
    in_flight = tasks // 3
    hosts = hosts or ((1, 2) if quick else (1, 2, 4))
    systems = ["controller", *(f"matrix:{h}" for h in hosts)]
    schedule = [s for _ in range(repeats) for s in systems]
    random.Random(tasks).shuffle(schedule)
    runs: dict[str, list[dict]] = {s: [] for s in systems}
    for system in schedule:
        r = run_controller(tasks, in_flight) if system == "controller" else run_matrix(tasks, in_flight, int(system.split(":")[1]))
        runs[system].append(r)
        print(f"scaleout {system:<10} {r['hops_per_s']:>8.0f} hops/s  {r['cpu_cores']:.2f} cores  {r['cpu_ms_per_hop']:.3f} ms CPU/hop "
              f"(hosts {r['host_cpu_ms_per_hop']:.3f}, driver {r['driver_cpu_ms_per_hop']:.3f})  load {r['load_avg']:.1f}", flush=True)
    base = statistics.median(r["hops_per_s"] for r in runs["controller"])
    rows = []
    for system in systems:
        row = {"system": system, "hosts": 0 if system == "controller" else int(system.split(":")[1]), "tasks_in_flight": in_flight, "tasks": tasks, "turns": TURNS,
               **{m: spread(r[m] for r in runs[system]) for m in METRICS}}
        row["vs_controller"] = row["hops_per_s"]["median"] / base
        rows.append(row)
    return {"rows": rows, "repeats": repeats, "order": schedule, "model": extrapolate(rows)}


def extrapolate(rows: list[dict], nodes: int = 32, cores: int = 8) -> dict[str, Any]:
    """hops/s on ``nodes`` x ``cores`` from measured CPU per hop (the model the doc states).

    Matrix: every host is one process (one core at most); hosts add up until the one driver
    or the one sink runs out of its core: min(nodes*cores / host_ms, 1 / driver_ms, 1 / rest_ms)
    hops per ms. The controller is one process: 1 / its ms per hop, whatever the cluster.
    """
    matrix = [r for r in rows if r["hosts"]]
    best = min(matrix, key=lambda r: r["cpu_ms_per_hop"]["median"])
    host_ms, driver_ms, rest_ms = (best[k]["median"] for k in ("host_cpu_ms_per_hop", "driver_cpu_ms_per_hop", "rest_cpu_ms_per_hop"))
    controller_ms = next(r for r in rows if not r["hosts"])["cpu_ms_per_hop"]["median"]
    hosts_limit = nodes * cores * 1000 / max(host_ms, 1e-9)
    driver_limit = 1000 / max(driver_ms, 1e-9)
    rest_limit = 1000 / max(rest_ms, 1e-9)
    return {"nodes": nodes, "cores_per_node": cores, "host_cpu_ms_per_hop": host_ms, "driver_cpu_ms_per_hop": driver_ms,
            "rest_cpu_ms_per_hop": rest_ms, "controller_cpu_ms_per_hop": controller_ms,
            "matrix_hops_per_s": min(hosts_limit, driver_limit, rest_limit), "hosts_limit": hosts_limit, "driver_limit": driver_limit,
            "rest_limit": rest_limit, "controller_hops_per_s": 1000 / max(controller_ms, 1e-9)}


COLUMNS = [
    ("system", "system", lambda r: "one asyncio controller process" if not r["hosts"] else f"matrix, {r['hosts']} agent host{'s' if r['hosts'] > 1 else ''}"),
    ("in_flight", "tasks in flight", lambda r: f"{r['tasks_in_flight']:,}"),
    ("hops", "hops/s (steady)", lambda r: fmt(r["hops_per_s"])),
    ("vs", "÷ controller", lambda r: f"{r['vs_controller']:.2f}"),
    ("cores", "CPU cores used", lambda r: fmt(r["cpu_cores"], 2)),
    ("cpu", "CPU ms per hop (all)", lambda r: fmt(r["cpu_ms_per_hop"], 3)),
    ("host", "in hosts", lambda r: fmt(r["host_cpu_ms_per_hop"], 3)),
    ("driver", "in driver", lambda r: fmt(r["driver_cpu_ms_per_hop"], 3)),
    ("rest", "sink + Ray", lambda r: fmt(r["rest_cpu_ms_per_hop"], 3)),
    ("mem", "peak PSS MB", lambda r: fmt(r["peak_pss_mb"])),
    ("load", "load avg", lambda r: fmt(r["load_avg"], 1)),
]
