"""Suite ``offload``: the cost of a hop as a task's history grows, offloading on and off.

``bench_ballast``: each task carries one history turn of N bytes between two roles on
different actors (``run.colocate=false``: every hop crosses a process), and each agent reads
the history, as an LLM agent reads it for its prompt. Modes: ``inline`` never offloads
(threshold 0), ``offload`` always does (threshold 1 byte: the history goes to the object store
once and travels as a reference). The shipped ``run.offload_threshold_bytes`` (64 KiB) behaves
as ``inline`` below it and as ``offload`` above it.
The crossover is the smallest size at which offloading is cheaper than inline.
"""
from __future__ import annotations

import statistics
from typing import Any

from ._common import fmt, spread
from .overhead import run_matrix
from .workload import register

MODES = {"inline": 0, "offload": 1}  # the default threshold (64 KiB) picks one of them per size


def suite_offload(quick: bool, repeats: int) -> dict[str, Any]:
    sizes = (1024, 262144) if quick else (1024, 16384, 65536, 262144, 1048576)
    tasks, laps = (16, 6) if quick else (32, 20)
    register()
    rows = []
    for size in sizes:
        runs: dict[str, list[dict]] = {m: [] for m in MODES}
        for _ in range(repeats):
            for mode, threshold in MODES.items():
                r = run_matrix("bench_ballast", [f"ballast_bytes={size}", f"laps={laps}", f"dataset.size={tasks}",
                                                 f"run.offload_threshold_bytes={threshold}"])
                assert r["failed"] == 0 and r["hops"] == tasks * laps, r
                r["us_per_hop"] = 1e6 * r["wall_s"] / r["hops"]
                runs[mode].append(r)
        inline = statistics.median(r["us_per_hop"] for r in runs["inline"])
        for mode, results in runs.items():
            row = {"bytes": size, "mode": mode, **{m: spread(r[m] for r in results) for m in ("us_per_hop", "hops_per_s", "cpu_ms_per_hop")}}
            row["vs_inline"] = row["us_per_hop"]["median"] / inline
            rows.append(row)
            print(f"{size:>8} B | {mode:<16} | {fmt(row['us_per_hop']):>20} us/hop | x{row['vs_inline']:.2f} of inline | "
                  f"{fmt(row['cpu_ms_per_hop'], 2)} ms CPU/hop", flush=True)
    cheaper = [r["bytes"] for r in rows if r["mode"] == "offload" and r["vs_inline"] < 1.0]
    crossover = min(cheaper) if cheaper else None
    print(f"offloading is cheaper than inline from {crossover} bytes" if crossover else "offloading was never cheaper than inline")
    return {"rows": rows, "repeats": repeats, "tasks": tasks, "laps": laps, "crossover_bytes": crossover, "figure": _figure(rows)}


COLUMNS = [
    ("bytes", "history bytes", lambda r: f"{r['bytes']:,}"),
    ("mode", "mode", lambda r: r["mode"]),
    ("us", "µs per hop (wall)", lambda r: fmt(r["us_per_hop"])),
    ("vs", "÷ inline", lambda r: f"{r['vs_inline']:.2f}"),
    ("cpu", "CPU ms per hop", lambda r: fmt(r["cpu_ms_per_hop"], 2)),
]


def _figure(rows: list[dict]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for mode in MODES:
        mine = [r for r in rows if r["mode"] == mode]
        xs = [r["bytes"] for r in mine]
        med = [r["us_per_hop"]["median"] for r in mine]
        err = [[m - r["us_per_hop"]["min"] for m, r in zip(med, mine)], [r["us_per_hop"]["max"] - m for m, r in zip(med, mine)]]
        ax.errorbar(xs, med, yerr=err, marker="o", capsize=3, label=mode)
    ax.axvline(65536, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("history bytes carried by the task")
    ax.set_ylabel("µs per hop (wall)")
    ax.set_title("Hop cost vs history size (dashed: default threshold)")
    ax.legend()
    return fig
