"""Suite ``scheduling``: the same heavy-tailed multi-turn workload and the same simulated LLM
capacity, driven by Matrix P2P and by three baselines, at several concurrencies.

- ``matrix``: ``matrix run bench_chat`` (row-level: each task moves on as soon as its reply is in).
- ``ray_data``: one ``map_batches`` stage per turn; a batch leaves a stage when its slowest row
  is done (the barrier of batch-level pipelines). Concurrency = batch size x concurrent batches.
- ``asyncio``: one process drives every task's turns with asyncio (a central controller).
- ``threads``: a pool of blocking workers, one task per thread at a time.

All four send the same prompts with the same ``max_tokens`` to one simllm replica that fills
``max_tokens`` exactly, so the token work is identical. Utilisation is the replica's busy
slot-seconds over ``max_num_seqs`` x elapsed simulated time (1.0 is the physical limit).
"""
from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from ._common import SimLLM, fmt, spread
from .workload import messages_for, task_plan

SYSTEMS = ("matrix", "ray_data", "asyncio", "threads")
SLOTS = 16
RAY_DATA_BATCHES = 4  # concurrent batches (actors); batch size = concurrency / this


def server_settings(quick: bool) -> dict[str, Any]:
    # 16 slots at time scale 4 saturate at ~80 calls/s (64-token replies): well under what 2
    # shared cores can drive, so the LLM, not the CPU, is the bottleneck for every system.
    return {"max_num_seqs": SLOTS, "time_scale": 4, "prefill_tps": 1e6, "tick_ms": 10,
            "output_tokens": {"dist": "fixed", "mean": 4096, "max": 4096}}


def _body(replies: list[str], max_tokens: int) -> dict[str, Any]:
    return {"model": "simllm", "messages": messages_for(replies), "max_tokens": max_tokens}


def _reply(data: dict[str, Any]) -> str:
    return data["choices"][0]["message"]["content"]


# --- baselines --------------------------------------------------------------------------
def run_asyncio(url: str, plans: list[list[int]], concurrency: int) -> list[tuple[float, float]]:
    async def main() -> list[tuple[float, float]]:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(limits=limits, timeout=600) as http:
            gate = asyncio.Semaphore(concurrency)

            async def one(plan: list[int]) -> tuple[float, float]:
                async with gate:
                    t0, replies = time.time(), []
                    for max_tokens in plan:
                        r = await http.post(url + "/chat/completions", json=_body(replies, max_tokens))
                        r.raise_for_status()
                        replies.append(_reply(r.json()))
                    return t0, time.time()

            return await asyncio.gather(*(one(p) for p in plans))

    return asyncio.run(main())


def run_threads(url: str, plans: list[list[int]], concurrency: int) -> list[tuple[float, float]]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(limits=limits, timeout=600) as http:
        def one(plan: list[int]) -> tuple[float, float]:
            t0, replies = time.time(), []
            for max_tokens in plan:
                r = http.post(url + "/chat/completions", json=_body(replies, max_tokens))
                r.raise_for_status()
                replies.append(_reply(r.json()))
            return t0, time.time()

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            return list(pool.map(one, plans))


class TurnStages:
    """A Ray Data actor UDF: a batch goes through every turn, each turn a barrier.

    This is what Ray Data makes of one ``map_batches`` per turn: it fuses consecutive map
    stages into one task per batch. Actors (a fixed pool) rather than tasks, so worker
    start-up, the event loop and the HTTP client are set up once, not per batch. A row's
    replies travel as one JSON string so Arrow needs no nested types.
    """

    def __init__(self, url: str, turns: int):
        self.url, self.turns = url, turns
        self.loop = asyncio.new_event_loop()
        self.http = httpx.AsyncClient(limits=httpx.Limits(max_connections=None), timeout=600)

    async def _call(self, replies: list[str], max_tokens: int) -> str:
        r = await self.http.post(self.url + "/chat/completions", json=_body(replies, max_tokens))
        r.raise_for_status()
        return _reply(r.json())

    async def _all(self, calls: list[tuple[list[str], int]]) -> list[str]:
        return await asyncio.gather(*(self._call(*c) for c in calls))

    def __call__(self, table):
        import pyarrow as pa

        batch = table.to_pydict()
        replies = [json.loads(r) for r in batch["replies"]]
        started = time.time()
        for turn in range(self.turns):
            todo = [i for i, plan in enumerate(batch["plan"]) if len(plan) > turn]
            if not todo:
                break
            turn_started = time.time()
            calls = [(replies[i], int(batch["plan"][i][turn])) for i in todo]
            for i, reply in zip(todo, self.loop.run_until_complete(self._all(calls))):  # the barrier
                replies[i].append(reply)
                if turn == 0:
                    batch["t0"][i] = turn_started
        batch["replies"] = [json.dumps(r) for r in replies]
        batch["batch_span"] = [[started, time.time(), os.getpid()]] * len(replies)
        return pa.Table.from_pydict(batch)


def run_ray_data(url: str, plans: list[list[int]], concurrency: int, actors: int = RAY_DATA_BATCHES) -> list[tuple[float, float]]:
    import ray
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.execution_options.preserve_order = False
    ctx.print_on_execution_start = False
    batch_size = max(1, concurrency // actors)
    per_actor_cpus = float(ray.cluster_resources().get("CPU", 1)) / actors
    ds = ray.data.from_items([{"i": i, "plan": p, "replies": "[]", "t0": 0.0} for i, p in enumerate(plans)], override_num_blocks=max(1, len(plans) // batch_size))
    ds = ds.map_batches(TurnStages, fn_constructor_kwargs={"url": url, "turns": max(map(len, plans))}, batch_size=batch_size,
                        batch_format="pyarrow", concurrency=actors, num_cpus=per_actor_cpus)
    out, spans = [], []
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        now = time.time()  # a row is finished when the pipeline hands it over
        out += [(float(t0), now) for t0 in batch.column("t0").to_pylist()]
        spans.extend(batch.column("batch_span").to_pylist())
    global LAST_SPANS
    LAST_SPANS = spans
    assert len(out) == len(plans), f"ray data returned {len(out)} of {len(plans)} rows"
    return out


def run_matrix(url: str, plans: list[list[int]], concurrency: int, shape: dict[str, Any]) -> list[tuple[float, float]]:
    import matrix_core
    from matrix_core.testing import read_records

    from .workload import register

    register()
    with tempfile.TemporaryDirectory() as tmp:
        summary = matrix_core.run("bench_chat", [
            f"output.path={tmp}/out.jsonl", "run.progress=off", f"dataset.size={len(plans)}", f"llm.base_url={url}", "llm.model=simllm",
            f"llm.client.max_concurrency_per_endpoint={concurrency}", "llm.client.timeout_s=600",
            f"run.max_concurrent_tasks={concurrency}", f"agents.chat.max_in_flight={concurrency}",
            *(f"shape.{k}={v}" for k, v in shape.items()),
        ])
        records = read_records(f"{tmp}/out.jsonl")
    assert summary.failed == 0, f"{summary.failed} matrix tasks failed: {next(r['error'] for r in records if r.get('error'))}"
    return [(r["state"]["t0"], r["state"]["t1"]) for r in records]


def measure(system: str, server: SimLLM, plans: list[list[int]], concurrency: int, shape: dict[str, Any], ray_data_actors: int = RAY_DATA_BATCHES) -> dict[str, Any]:
    server.delta()
    if system == "matrix":
        spans = run_matrix(server.url, plans, concurrency, shape)
    elif system == "ray_data":
        spans = run_ray_data(server.url, plans, concurrency, ray_data_actors)
    else:
        spans = {"ray_data": run_ray_data, "asyncio": run_asyncio, "threads": run_threads}[system](server.url, plans, concurrency)
    sim = server.delta()
    expected = sum(len(p) for p in plans)
    assert sim["completed"] == expected, f"{system}: server completed {sim['completed']} calls, expected {expected}"
    start, end = min(s for s, _ in spans), max(e for _, e in spans)
    wall = end - start
    latencies = sorted(e - s for s, e in spans)
    scale, slots = server.settings["time_scale"], server.settings["max_num_seqs"]
    return {
        "wall_s": wall,
        "tasks_per_s": len(plans) / wall,
        "tokens_per_s": sim["generated_tokens"] / wall,
        "utilisation": sim["slot_seconds"] / (slots * wall * scale),
        "mean_requests_at_server": sim["latency_sum_s"] / (wall * scale),
        "p50_latency_s": statistics.median(latencies),
        "p99_latency_s": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "calls": sim["completed"],
        "generated_tokens": sim["generated_tokens"],
    }


METRICS = ("tasks_per_s", "tokens_per_s", "utilisation", "mean_requests_at_server", "p50_latency_s", "p99_latency_s", "wall_s")


def suite_scheduling(quick: bool, repeats: int, systems: tuple[str, ...] = SYSTEMS) -> dict[str, Any]:
    concurrencies = (8, 32) if quick else (8, 32, 128)  # 0.5x, 2x and 8x the LLM's slots
    shape = {"seed": 0, "turns_mean": 5.0, "turns_sigma": 1.0, "max_turns": 30, "tokens_mean": 64.0, "tokens_sigma": 0.8}
    server = SimLLM(**server_settings(quick))
    rows = []
    try:
        for concurrency in concurrencies:
            n_tasks = max(2 * concurrency, 48 if quick else 96)
            plans = [task_plan(i, shape) for i in range(n_tasks)]
            runs: dict[str, list[dict]] = {s: [] for s in systems}
            for _ in range(repeats):
                for system in systems:  # interleaved: the machine's load drifts over all of them alike
                    runs[system].append(measure(system, server, plans, concurrency, shape, 2 if quick else RAY_DATA_BATCHES))
            base = {s: statistics.median(r["tasks_per_s"] for r in runs[s]) for s in systems}
            for system in systems:
                row = {"concurrency": concurrency, "tasks": n_tasks, "calls": sum(map(len, plans)), "system": system,
                       **{m: spread(r[m] for r in runs[system]) for m in METRICS}}
                if "matrix" in base:
                    row["matrix_vs_this_tasks_per_s"] = base["matrix"] / base[system]
                rows.append(row)
                print(f"c={concurrency:>4} {system:<9} | tasks/s {fmt(row['tasks_per_s'], 1):>18} | tok/s {fmt(row['tokens_per_s']):>18} "
                      f"| util {fmt(row['utilisation'], 2):>16} | p50 {fmt(row['p50_latency_s'], 2)} s | p99 {fmt(row['p99_latency_s'], 2)} s "
                      f"| matrix x{row.get('matrix_vs_this_tasks_per_s', 0):.2f}", flush=True)
    finally:
        server.close()
    return {"rows": rows, "server": {k: server.settings[k] for k in ("max_num_seqs", "time_scale", "decode_tps_single", "decode_alpha", "prefill_tps")},
            "shape": shape, "repeats": repeats, "figure": _figure(rows)}


COLUMNS = [
    ("concurrency", "tasks in flight", lambda r: str(r["concurrency"])),
    ("system", "system", lambda r: r["system"]),
    ("tasks_per_s", "tasks/s", lambda r: fmt(r["tasks_per_s"], 1)),
    ("tokens_per_s", "tokens/s", lambda r: fmt(r["tokens_per_s"])),
    ("utilisation", "slot utilisation", lambda r: fmt(r["utilisation"], 2)),
    ("p50", "p50 latency s", lambda r: fmt(r["p50_latency_s"], 1)),
    ("p99", "p99 latency s", lambda r: fmt(r["p99_latency_s"], 1)),
    ("ratio", "Matrix tasks/s ÷ this", lambda r: f"{r.get('matrix_vs_this_tasks_per_s', float('nan')):.2f}"),
]


def _figure(rows: list[dict]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for system in dict.fromkeys(r["system"] for r in rows):
        mine = [r for r in rows if r["system"] == system]
        xs = [r["concurrency"] for r in mine]
        for ax, key in zip(axes, ("tasks_per_s", "utilisation", "p99_latency_s")):
            med = [r[key]["median"] for r in mine]
            err = [[m - r[key]["min"] for m, r in zip(med, mine)], [r[key]["max"] - m for m, r in zip(med, mine)]]
            ax.errorbar(xs, med, yerr=err, marker="o", capsize=3, label=system)
    for ax, title in zip(axes, ("tasks/s", "LLM slot utilisation (1.0 = limit)", "p99 task latency (s)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("tasks in flight")
        ax.set_title(title)
    axes[1].axhline(1.0, color="grey", linestyle="--", linewidth=0.8)
    axes[0].legend()
    return fig
