"""Suite ``overhead`` (also ``core``): a workflow whose agents do no I/O, against the
ceiling of raw Ray actor-to-actor calls measured in the same run.

The relay (3 roles, no LLM) in three runtime modes, and a raw loop of one Ray call per
message between two actors with the same message (an orchestrator). CPU seconds per hop are
the CPU time of every process of the local Ray cluster during the run, over its hops.
"""
from __future__ import annotations

import statistics
import tempfile
from typing import Any

from ._common import cluster_cpu_s, fmt, spread
from ._memory import PeakMemory

CORE_MODES = {
    "matrix p2p (default: co-located roles, coalesced forwarding)": [],
    "matrix, one actor per role replica, coalesced": ["run.colocate=false"],
    "naive: one actor per role, one Ray call per hop": ["run.colocate=false", "run.batch_max=1", "run.outstanding_per_peer=1000000"],
}
RAW = "raw Ray actor-to-actor calls (one per message, 512 in flight)"
RAW_BATCHED = "raw Ray calls batched as ours (lists of up to 256 messages, 2 calls in flight per peer)"


def run_matrix(workflow: str, overrides: list[str]) -> dict[str, Any]:
    import matrix_core

    with tempfile.TemporaryDirectory() as tmp:
        with PeakMemory() as mem:
            summary = matrix_core.run(workflow, [f"output.path={tmp}/out.jsonl", "run.progress=off", *overrides])
        cpu = mem.cpu_s
        lines = sum(1 for _ in open(f"{tmp}/out.jsonl"))
    assert lines == summary.done + summary.failed, "output must hold every task once"
    return {
        "tasks": summary.done + summary.failed, "failed": summary.failed, "hops": summary.hops,
        "wall_s": summary.wall_s, "startup_s": summary.startup_s,
        "tasks_per_s": summary.tasks_per_s, "hops_per_s": summary.hops_per_s,
        "cpu_s": cpu,  # every process of the cluster, including the run's actor start-up
        "cpu_ms_per_hop": 1000 * cpu / max(1, summary.hops),
        "peak_cluster_pss_mb": mem.peak / 2**20, "idle_cluster_pss_mb": mem.baseline / 2**20,
    }


def net_cpu(results: list[dict], fixed_cpu_s: float) -> None:
    """CPU per hop without the run's fixed cost (actor start-up and shutdown, measured on a 1-task run)."""
    for r in results:
        r["cpu_ms_per_hop"] = 1000 * max(0.0, r["cpu_s"] - fixed_cpu_s) / max(1, r["hops"])


def fixed_cpu(workflow: str, overrides: list[str]) -> float:
    return run_matrix(workflow, [*(o for o in overrides if not o.startswith("dataset.size=")), "dataset.size=1"])["cpu_s"]


def run_raw(n: int, batch: int = 0, outstanding: int = 2) -> dict[str, Any]:
    import ray

    from matrix_plugin_relay import RelayOrchestrator

    from ._actors import Receiver, Sender

    message = RelayOrchestrator.from_row({"id": 0, "n": 0}, row_key="0", trial=0, config={"agents": {"a": {}, "b": {}, "c": {}}})
    sender, receiver = Sender.remote(), Receiver.remote()
    ray.get(sender.blast.remote(receiver, message, 200, 64))  # warm: both processes up, connections open
    cpu0 = cluster_cpu_s()
    if batch:  # the same batching as the runtime's defaults (run.batch_max, run.outstanding_per_peer)
        wall = ray.get(sender.blast_batched.remote(receiver, message, n, batch, outstanding))
    else:
        wall = ray.get(sender.blast.remote(receiver, message, n, 512))
    cpu = cluster_cpu_s() - cpu0
    ray.kill(sender)
    ray.kill(receiver)
    return {"hops": n, "wall_s": wall, "hops_per_s": n / wall, "cpu_ms_per_hop": 1000 * cpu / n}


METRICS = ("tasks_per_s", "hops_per_s", "cpu_ms_per_hop", "peak_cluster_pss_mb", "idle_cluster_pss_mb")


def suite_overhead(quick: bool, repeats: int) -> dict[str, Any]:
    sizes = (300,) if quick else (1000, 10000)
    common = ["run.max_concurrent_tasks=1024", "run.hosts=2"]
    fixed = {mode: fixed_cpu("relay", [*common, *extra]) for mode, extra in CORE_MODES.items()}
    rows = []
    for size in sizes:
        runs: dict[str, list[dict]] = {m: [] for m in [*CORE_MODES, RAW, RAW_BATCHED]}
        for _ in range(repeats):
            for mode, extra in CORE_MODES.items():
                n = size
                if mode.startswith("naive") and size > 2000:
                    n = 2000  # ~500 hops/s: 10k tasks would take a minute for the same ratio
                runs[mode].append(run_matrix("relay", [*common, *extra, f"dataset.size={n}"]))
                net_cpu(runs[mode][-1:], fixed[mode])
            runs[RAW].append(run_raw(3 * min(size, 3000)))
            runs[RAW_BATCHED].append(run_raw(3 * size, batch=256, outstanding=2))
        ceiling = statistics.median(r["hops_per_s"] for r in runs[RAW])
        batched = statistics.median(r["hops_per_s"] for r in runs[RAW_BATCHED])
        for mode, results in runs.items():
            row = {"size": size, "mode": mode, **{m: spread(r[m] for r in results) for m in METRICS if m in results[0]}}
            row["hops_vs_raw_ray"] = row["hops_per_s"]["median"] / ceiling
            row["hops_vs_raw_batched"] = row["hops_per_s"]["median"] / batched
            rows.append(row)
            print(f"{size:>6} tasks | {mode:<62} | {fmt(row.get('tasks_per_s', {'median': 0, 'n': 1})):>18} tasks/s "
                  f"| {fmt(row['hops_per_s']):>20} hops/s | x{row['hops_vs_raw_ray']:.2f} of raw Ray | {fmt(row['cpu_ms_per_hop'], 3)} ms CPU/hop", flush=True)
    return {"rows": rows, "repeats": repeats, "figure": _figure(rows)}


COLUMNS = [
    ("size", "tasks", lambda r: str(r["size"])),
    ("mode", "mode", lambda r: r["mode"]),
    ("tasks_per_s", "tasks/s", lambda r: fmt(r["tasks_per_s"]) if "tasks_per_s" in r else "–"),
    ("hops_per_s", "hops/s", lambda r: fmt(r["hops_per_s"])),
    ("vs", "hops/s ÷ raw Ray calls", lambda r: f"{r['hops_vs_raw_ray']:.2f}"),
    ("vsb", "÷ raw Ray batched as ours", lambda r: f"{r['hops_vs_raw_batched']:.2f}" if "hops_vs_raw_batched" in r else "–"),
    ("cpu", "CPU ms per hop", lambda r: fmt(r["cpu_ms_per_hop"], 3)),
    ("mem", "peak cluster PSS MB", lambda r: fmt(r["peak_cluster_pss_mb"]) if "peak_cluster_pss_mb" in r else "–"),
]


def _figure(rows: list[dict]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    sizes = sorted({r["size"] for r in rows})
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    width = 0.8 / len(modes)
    for k, mode in enumerate(modes):
        mine = {r["size"]: r["hops_per_s"] for r in rows if r["mode"] == mode}
        xs = [i + k * width for i in range(len(sizes))]
        med = [mine[s]["median"] for s in sizes]
        err = [[m - mine[s]["min"] for m, s in zip(med, sizes)], [mine[s]["max"] - m for m, s in zip(med, sizes)]]
        ax.bar(xs, med, width, yerr=err, capsize=3, label=mode.split(" (")[0])
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(sizes))], [f"{s} tasks" for s in sizes])
    ax.set_ylabel("agent hops/s")
    ax.set_title("No-I/O relay: hops/s (median, min-max)")
    ax.legend(fontsize=8)
    return fig
