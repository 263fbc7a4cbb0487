"""Suite ``scheduling``: the same heavy-tailed multi-turn workload and the same simulated LLM
capacity, driven by Matrix P2P and by three baselines, at several concurrencies.

- ``matrix``: ``matrix run bench_chat`` (row-level: each task moves on as soon as its reply is in).
- ``ray_data_async``: ``map_batches`` with an async UDF in which each row's whole chain is one
  coroutine (row-level inside a batch); actors and batch size tuned per concurrency, tuning kept.
- ``ray_data_batch``: one ``map_batches`` stage per turn; a batch leaves a stage when its slowest
  row is done (the barrier of batch-level pipelines). Concurrency = batch size x actors.
- ``asyncio``: one process drives every task's turns with asyncio (a central controller).
- ``threads``: a pool of blocking workers, one task per thread at a time.

Every system uses the same client configuration (``LLMClient``, or for threads blocking
clients in pools of the same size). All send the same prompts with the same ``max_tokens`` to one simllm replica that fills
``max_tokens`` exactly, so the token work is identical. Utilisation is the replica's busy
slot-seconds over ``max_num_seqs`` x elapsed simulated time (1.0 is the physical limit).
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from ._common import SimLLM, fmt, spread
from ._window import Window, steady_window
from .workload import messages_for, task_plan

SYSTEMS = ("matrix", "ray_data_async", "ray_data_batch", "asyncio", "threads")
SLOTS = 16
RAY_DATA_BATCHES = 4  # concurrent batches (actors); batch size = concurrency / this
ROWS_PER_SLOT = 8  # async Ray Data: a block holds this many times the rows an actor has in flight


def server_settings(quick: bool) -> dict[str, Any]:
    # 16 slots at time scale 6 saturate at ~120 calls/s (64-token replies): under what 2 cores
    # drive for every system, so the LLM, not the CPU, is the bottleneck.
    return {"max_num_seqs": SLOTS, "time_scale": 6, "prefill_tps": 1e6, "tick_ms": 10,
            "output_tokens": {"dist": "fixed", "mean": 4096, "max": 4096}}


def _body(replies: list[str], max_tokens: int) -> dict[str, Any]:
    return {"model": "simllm", "messages": messages_for(replies), "max_tokens": max_tokens}


def _reply(data: dict[str, Any]) -> str:
    return data["choices"][0]["message"]["content"]


# --- baselines --------------------------------------------------------------------------
# Every system talks to the server through the same client configuration: ``LLMClient``
# itself (pools of CONNECTIONS_PER_POOL connections, least-busy pool per call) for the async
# ones, and for the thread pool blocking httpx clients split into pools of the same size.
def _client(url: str, concurrency: int):
    from matrix_core import Endpoint, LLMClient

    return LLMClient([Endpoint(base_url=url, model="simllm")], max_concurrency_per_endpoint=concurrency, timeout_s=600, max_retries=0)


async def _chain(llm, plan: list[int], gate: asyncio.Semaphore | None = None) -> tuple[float, float]:
    """One task's whole chain of turns as one coroutine: (first call sent, last reply in)."""
    async def run() -> tuple[float, float]:
        t0, replies = time.time(), []
        for max_tokens in plan:
            replies.append((await llm.chat(messages_for(replies), max_tokens=max_tokens)).content)
        return t0, time.time()

    if gate is None:
        return await run()
    async with gate:
        return await run()


def run_asyncio(url: str, plans: list[list[int]], concurrency: int) -> list[tuple[float, float]]:
    async def main() -> list[tuple[float, float]]:
        llm = _client(url, concurrency)
        try:
            gate = asyncio.Semaphore(concurrency)
            return await asyncio.gather(*(_chain(llm, p, gate) for p in plans))
        finally:
            await llm.aclose()

    return asyncio.run(main())


def run_threads(url: str, plans: list[list[int]], concurrency: int) -> list[tuple[float, float]]:
    import threading

    from matrix_core.llm import CONNECTIONS_PER_POOL

    pools = [httpx.Client(limits=httpx.Limits(max_connections=CONNECTIONS_PER_POOL, max_keepalive_connections=CONNECTIONS_PER_POOL), timeout=600)
             for _ in range(-(-concurrency // CONNECTIONS_PER_POOL))]
    mine, counter, lock = threading.local(), [0], threading.Lock()

    def pool() -> httpx.Client:
        if not hasattr(mine, "http"):  # each worker thread keeps one pool: CONNECTIONS_PER_POOL threads per pool
            with lock:
                mine.http = pools[counter[0] % len(pools)]
                counter[0] += 1
        return mine.http

    def one(plan: list[int]) -> tuple[float, float]:
        t0, replies, http = time.time(), [], pool()
        for max_tokens in plan:
            r = http.post(url + "/chat/completions", json=_body(replies, max_tokens))
            r.raise_for_status()
            replies.append(_reply(r.json()))
        return t0, time.time()

    try:
        with ThreadPoolExecutor(max_workers=concurrency) as executor:
            return list(executor.map(one, plans))
    finally:
        for p in pools:
            p.close()


class TurnStages:
    """Ray Data, batch-level: a batch goes through every turn, each turn a barrier.

    This is what Ray Data makes of one ``map_batches`` per turn: it fuses consecutive map
    stages into one task per batch. Actors (a fixed pool) rather than tasks, so worker
    start-up, the event loop and the client are set up once, not per batch. A row's
    replies travel as one JSON string so Arrow needs no nested types.
    """

    def __init__(self, url: str, turns: int, concurrency: int):
        self.url, self.turns = url, turns
        self.loop = asyncio.new_event_loop()
        self.llm = _client(url, concurrency)

    async def _call(self, replies: list[str], max_tokens: int) -> str:
        return (await self.llm.chat(messages_for(replies), max_tokens=max_tokens)).content

    async def _all(self, calls: list[tuple[list[str], int]]) -> list[str]:
        return await asyncio.gather(*(self._call(*c) for c in calls))

    def __call__(self, table):
        import pyarrow as pa

        batch = table.to_pydict()
        replies = [json.loads(r) for r in batch["replies"]]
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
                batch["t1"][i] = time.time()
        batch["replies"] = [json.dumps(r) for r in replies]
        return pa.Table.from_pydict(batch)


class RowChains:
    """Ray Data, row-level: an async UDF in which each row's whole chain is one coroutine.

    Ray Data runs up to ``batches_in_flight`` of these batch coroutines at once per actor
    (set below); within a batch every row's chain runs on its own, no barrier between turns.
    A batch still leaves the stage when its slowest row is done.
    """

    def __init__(self, url: str, concurrency: int):
        self.llm = _client(url, concurrency)

    async def __call__(self, table):
        import pyarrow as pa

        batch = table.to_pydict()
        spans = await asyncio.gather(*(_chain(self.llm, [int(t) for t in plan]) for plan in batch["plan"]))
        batch["t0"], batch["t1"] = [s for s, _ in spans], [e for _, e in spans]
        return pa.Table.from_pydict(batch)


def _ray_data(plans: list[list[int]], blocks: int):
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.execution_options.preserve_order = False
    ctx.print_on_execution_start = False
    rows = [{"i": i, "plan": p, "replies": "[]", "t0": 0.0, "t1": 0.0} for i, p in enumerate(plans)]
    return ray.data.from_items(rows, override_num_blocks=max(1, min(len(plans), blocks)))


def _collect(ds, n: int) -> list[tuple[float, float]]:
    out = []
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        out += list(zip(batch.column("t0").to_pylist(), batch.column("t1").to_pylist()))
    assert len(out) == n, f"ray data returned {len(out)} of {n} rows"
    return out


def run_ray_data_batch(url: str, plans: list[list[int]], concurrency: int, actors: int = RAY_DATA_BATCHES) -> list[tuple[float, float]]:
    import ray

    batch_size = max(1, concurrency // actors)
    per_actor_cpus = float(ray.cluster_resources().get("CPU", 1)) / actors
    ds = _ray_data(plans, len(plans) // batch_size).map_batches(
        TurnStages, fn_constructor_kwargs={"url": url, "turns": max(map(len, plans)), "concurrency": batch_size},
        batch_size=batch_size, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=per_actor_cpus)
    return _collect(ds, len(plans))


def run_ray_data_async(url: str, plans: list[list[int]], concurrency: int, actors: int = 1, batch_size: int = 1) -> list[tuple[float, float]]:
    """``actors`` x ``batch_size`` x batches in flight per actor = ``concurrency`` rows in flight."""
    import ray
    import ray.data
    from ray.data._internal.planner import plan_udf_map_op

    in_flight = max(1, concurrency // (actors * batch_size))
    # Ray Data reads how many async batch UDF calls an actor runs at once from this module
    # constant (env RAY_DATA_DEFAULT_ASYNC_BATCH_UDF_MAX_CONCURRENCY, default 4) when it plans.
    saved = plan_udf_map_op.DEFAULT_ASYNC_BATCH_UDF_MAX_CONCURRENCY
    plan_udf_map_op.DEFAULT_ASYNC_BATCH_UDF_MAX_CONCURRENCY = in_flight
    try:
        per_actor_cpus = float(ray.cluster_resources().get("CPU", 1)) / actors
        # One block (task) at a time per actor, so rows in flight are at most actors x in_flight
        # x batch_size. A block keeps that many going until it runs out of rows, then drains
        # to its longest row: blocks of ROWS_PER_SLOT x the rows in flight keep that tail rare.
        blocks = max(actors, len(plans) // (ROWS_PER_SLOT * in_flight * batch_size))
        ds = _ray_data(plans, blocks).map_batches(
            RowChains, fn_constructor_kwargs={"url": url, "concurrency": in_flight * batch_size},
            batch_size=batch_size, batch_format="pyarrow", num_cpus=per_actor_cpus,
            compute=ray.data.ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=1))
        return _collect(ds, len(plans))
    finally:
        plan_udf_map_op.DEFAULT_ASYNC_BATCH_UDF_MAX_CONCURRENCY = saved


def ray_data_grid(concurrency: int) -> list[dict[str, int]]:
    """The async Ray Data settings tried: 1 or 2 actors; one row per batch (row-level) or 4 batches per actor."""
    grid = []
    for actors in (1, 2):
        for batch_size in dict.fromkeys((1, max(1, concurrency // (4 * actors)))):
            if actors * batch_size <= concurrency:
                grid.append({"actors": actors, "batch_size": batch_size})
    return grid


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


def measure(system: str, server: SimLLM, plans: list[list[int]], concurrency: int, shape: dict[str, Any], **params: int) -> dict[str, Any]:
    server.delta()
    runner = {"matrix": lambda: run_matrix(server.url, plans, concurrency, shape),
              "ray_data_async": lambda: run_ray_data_async(server.url, plans, concurrency, **params),
              "ray_data_batch": lambda: run_ray_data_batch(server.url, plans, concurrency, **params),
              "asyncio": lambda: run_asyncio(server.url, plans, concurrency),
              "threads": lambda: run_threads(server.url, plans, concurrency)}[system]
    with Window(os.devnull) as window:  # CPU, memory and load of this process tree (the local Ray) while it runs
        spans = runner()
    sim = server.delta()
    expected = sum(len(p) for p in plans)
    assert sim["completed"] == expected, f"{system}: server completed {sim['completed']} calls, expected {expected}"
    start, end = min(s for s, _ in spans), max(e for _, e in spans)
    wall = end - start
    w0, w1, inside = steady_window([e for _, e in spans])
    latencies = sorted(e - s for s, e in spans)
    scale, slots = server.settings["time_scale"], server.settings["max_num_seqs"]
    steady = window.between(w0, w1)
    return {
        "wall_s": wall,
        "tasks_per_s": inside / max(w1 - w0, 1e-9),  # steady state: between 10 % and 90 % of the tasks done
        "whole_run_tasks_per_s": len(plans) / wall,
        "tokens_per_s": sim["generated_tokens"] / wall,
        "utilisation": sim["slot_seconds"] / (slots * wall * scale),
        "mean_requests_at_server": sim["latency_sum_s"] / (wall * scale),
        "p50_latency_s": statistics.median(latencies),
        "p99_latency_s": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "cpu_cores": steady["cpu_cores_in_window"], "peak_pss_mb": steady["peak_pss_mb"], "load_avg": steady["load_avg_in_window"],
        "calls": sim["completed"],
        "generated_tokens": sim["generated_tokens"],
    }


METRICS = ("tasks_per_s", "whole_run_tasks_per_s", "tokens_per_s", "utilisation", "mean_requests_at_server", "p50_latency_s", "p99_latency_s",
           "wall_s", "cpu_cores", "peak_pss_mb", "load_avg")


def tune_ray_data(server: SimLLM, plans: list[list[int]], concurrency: int, shape: dict[str, Any]) -> tuple[dict[str, int], list[dict]]:
    """One run per async Ray Data setting on a quarter of the tasks; the best one is measured."""
    sample = plans[: max(2 * concurrency, len(plans) // 4)]
    tried = []
    for params in ray_data_grid(concurrency):
        r = measure("ray_data_async", server, sample, concurrency, shape, **params)
        tried.append({**params, "tasks": len(sample), "tasks_per_s": r["tasks_per_s"], "utilisation": r["utilisation"]})
        print(f"c={concurrency:>4} ray_data_async tuning {params} tasks/s {r['tasks_per_s']:.1f} util {r['utilisation']:.2f}", flush=True)
    best = max(tried, key=lambda t: t["tasks_per_s"])
    return {"actors": best["actors"], "batch_size": best["batch_size"]}, tried


def suite_scheduling(quick: bool, repeats: int, systems: tuple[str, ...] = SYSTEMS, tasks: int | None = None,
                     concurrencies: tuple[int, ...] | None = None) -> dict[str, Any]:
    concurrencies = concurrencies or ((8, 32) if quick else (8, 32, 128))  # 0.5x, 2x and 8x the LLM's slots
    shape = {"seed": 0, "turns_mean": 5.0, "turns_sigma": 1.0, "max_turns": 30, "tokens_mean": 64.0, "tokens_sigma": 0.8}
    server = SimLLM(**server_settings(quick))
    rows, tuning, order = [], {}, []
    try:
        for concurrency in concurrencies:
            n_tasks = max(2 * concurrency, tasks or (48 if quick else 2000))
            plans = [task_plan(i, shape) for i in range(n_tasks)]
            params = {"ray_data_batch": {"actors": 2 if quick else RAY_DATA_BATCHES}}
            if "ray_data_async" in systems:
                params["ray_data_async"], tuning[concurrency] = tune_ray_data(server, plans, concurrency, shape)
            schedule = [s for _ in range(repeats) for s in systems]
            random.Random(concurrency).shuffle(schedule)  # random order: drifting machine load hits every system alike
            runs: dict[str, list[dict]] = {s: [] for s in systems}
            for system in schedule:
                runs[system].append(measure(system, server, plans, concurrency, shape, **params.get(system, {})))
                order.append(f"{concurrency}:{system}")
            base = {s: statistics.median(r["tasks_per_s"] for r in runs[s]) for s in systems}
            for system in systems:
                row = {"concurrency": concurrency, "tasks": n_tasks, "calls": sum(map(len, plans)), "system": system,
                       "params": params.get(system, {}), **{m: spread(r[m] for r in runs[system]) for m in METRICS}}
                if "matrix" in base:
                    row["matrix_vs_this_tasks_per_s"] = base["matrix"] / base[system]
                rows.append(row)
                print(f"c={concurrency:>4} {system:<14} | tasks/s {fmt(row['tasks_per_s'], 1):>18} | tok/s {fmt(row['tokens_per_s']):>18} "
                      f"| util {fmt(row['utilisation'], 2):>16} | p50 {fmt(row['p50_latency_s'], 2)} s | p99 {fmt(row['p99_latency_s'], 2)} s "
                      f"| cpu {fmt(row['cpu_cores'], 2)} | matrix x{row.get('matrix_vs_this_tasks_per_s', 0):.2f}", flush=True)
    finally:
        server.close()
    return {"rows": rows, "server": {k: server.settings[k] for k in ("max_num_seqs", "time_scale", "decode_tps_single", "decode_alpha", "prefill_tps")},
            "shape": shape, "repeats": repeats, "ray_data_tuning": tuning, "order": order, "figure": _figure(rows)}


COLUMNS = [
    ("concurrency", "tasks in flight", lambda r: str(r["concurrency"])),
    ("system", "system", lambda r: r["system"]),
    ("params", "settings", lambda r: ", ".join(f"{k} {v}" for k, v in r.get("params", {}).items()) or "–"),
    ("tasks_per_s", "tasks/s (steady)", lambda r: fmt(r["tasks_per_s"], 1)),
    ("whole", "tasks/s (whole run)", lambda r: fmt(r["whole_run_tasks_per_s"], 1)),
    ("tokens_per_s", "tokens/s", lambda r: fmt(r["tokens_per_s"])),
    ("utilisation", "slot utilisation", lambda r: fmt(r["utilisation"], 2)),
    ("p50", "p50 latency s", lambda r: fmt(r["p50_latency_s"], 1)),
    ("p99", "p99 latency s", lambda r: fmt(r["p99_latency_s"], 1)),
    ("cpu", "CPU cores", lambda r: fmt(r["cpu_cores"], 2)),
    ("load", "load avg", lambda r: fmt(r["load_avg"], 1)),
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
