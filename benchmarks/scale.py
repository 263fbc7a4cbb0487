"""Suite ``scale``: 1k / 10k / 50k tasks in flight at once on the simulated LLM.

Every task is a one-turn chat (``bench_chat``, 32 tokens a turn) and all of them are admitted
together (``run.max_concurrent_tasks`` = tasks), so the whole dataset is in flight. The LLM is
the simllm engine inside each agent host (``llm=bench_sim``: no sockets, unbounded batch, a
turn takes 0.32 s), so what limits hops/s is the runtime. Memory is the PSS of every
process of the local Ray cluster, peak during the run minus before it, per task in flight.
"""
from __future__ import annotations

from typing import Any

from ._common import fmt, spread
from .overhead import fixed_cpu, net_cpu, run_matrix
from .workload import register

TURNS, TOKENS = 1, 32


def _overrides(tasks: int) -> list[str]:
    return ["llm=bench_sim", f"run.max_concurrent_tasks={tasks}", f"agents.chat.max_in_flight={tasks}",
            f"shape.turns_mean={TURNS}", "shape.turns_sigma=0", f"shape.tokens_mean={TOKENS}", "shape.tokens_sigma=0",
            f"dataset.size={tasks}"]


def run_once(tasks: int, fixed_cpu_s: float) -> dict[str, Any]:
    register()
    r = run_matrix("bench_chat", _overrides(tasks))
    net_cpu([r], fixed_cpu_s)
    assert r["failed"] == 0 and r["hops"] == TURNS * tasks, r
    r["mb_per_task_in_flight"] = (r["peak_cluster_pss_mb"] - r["idle_cluster_pss_mb"]) / tasks
    return r


METRICS = ("tasks_per_s", "hops_per_s", "cpu_ms_per_hop", "peak_cluster_pss_mb", "idle_cluster_pss_mb", "mb_per_task_in_flight", "wall_s")


def suite_scale(quick: bool, repeats: int) -> dict[str, Any]:
    register()
    sizes = (200, 2000) if quick else (1000, 10000, 50000)
    rows = []
    for size in sizes:
        fixed = fixed_cpu("bench_chat", _overrides(size))
        runs = [run_once(size, fixed) for _ in range(repeats)]
        row = {"in_flight": size, **{m: spread(r[m] for r in runs) for m in METRICS}}
        # The LLM alone would allow in_flight / turn latency hops/s: the runtime's share of that.
        row["hops_vs_llm_limit"] = row["hops_per_s"]["median"] / (size / (TOKENS / 100.0))
        rows.append(row)
        print(f"{size:>6} in flight | {fmt(row['hops_per_s']):>20} hops/s ({row['hops_vs_llm_limit']:.2f} of the LLM's limit) "
              f"| peak {fmt(row['peak_cluster_pss_mb'])} MB | {fmt(row['mb_per_task_in_flight'], 3)} MB/task | "
              f"{fmt(row['cpu_ms_per_hop'], 2)} ms CPU/hop", flush=True)
    return {"rows": rows, "repeats": repeats, "turns": TURNS, "tokens_per_turn": TOKENS, "figure": _figure(rows)}


COLUMNS = [
    ("in_flight", "tasks in flight", lambda r: f"{r['in_flight']:,}"),
    ("hops", "hops/s", lambda r: fmt(r["hops_per_s"])),
    ("limit", "÷ LLM-bound limit", lambda r: f"{r['hops_vs_llm_limit']:.2f}"),
    ("tasks", "tasks/s", lambda r: fmt(r["tasks_per_s"])),
    ("cpu", "CPU ms per hop", lambda r: fmt(r["cpu_ms_per_hop"], 2)),
    ("peak", "peak cluster PSS MB", lambda r: fmt(r["peak_cluster_pss_mb"])),
    ("idle", "idle MB", lambda r: fmt(r["idle_cluster_pss_mb"])),
    ("per", "MB per task in flight", lambda r: fmt(r["mb_per_task_in_flight"], 3)),
]


def _figure(rows: list[dict]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    xs = [r["in_flight"] for r in rows]
    for ax, key, title in ((a, "hops_per_s", "hops/s"), (b, "mb_per_task_in_flight", "MB per task in flight")):
        med = [r[key]["median"] for r in rows]
        err = [[m - r[key]["min"] for m, r in zip(med, rows)], [r[key]["max"] - m for m, r in zip(med, rows)]]
        ax.errorbar(xs, med, yerr=err, marker="o", capsize=3)
        ax.set_xscale("log")
        ax.set_xlabel("tasks in flight")
        ax.set_title(title)
    return fig
