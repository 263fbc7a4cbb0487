"""Suites ``durability``, ``protocol`` and ``client``: the runtime's own costs."""
from __future__ import annotations

import asyncio
import pickle
import statistics
import time
import timeit
from typing import Any

from ._common import fmt, spread
from .overhead import run_matrix

DURABILITY_MODES = {
    "durability off (flush only, no checkpoints)": ["sink.fsync=none"],
    "fsync every batch (default)": [],
    "fsync + checkpoint every 5 steps": ["run.checkpoint_every=5"],
    "fsync + checkpoint every step": ["run.checkpoint_every=1"],
}


def suite_durability(quick: bool, repeats: int) -> dict[str, Any]:
    """Cost of the durability settings on a 3-role relay with 3 laps (9 steps per task)."""
    size = 300 if quick else 5000
    runs: dict[str, list[dict]] = {m: [] for m in DURABILITY_MODES}
    for _ in range(repeats):
        for mode, extra in DURABILITY_MODES.items():
            runs[mode].append(run_matrix("relay", [f"dataset.size={size}", "laps=3", "run.max_concurrent_tasks=1024", "run.hosts=2", *extra]))
    base = statistics.median(r["tasks_per_s"] for r in runs[next(iter(DURABILITY_MODES))])
    rows = []
    for mode, results in runs.items():
        row = {"size": size, "mode": mode, "tasks_per_s": spread(r["tasks_per_s"] for r in results), "hops_per_s": spread(r["hops_per_s"] for r in results)}
        row["vs_off"] = row["tasks_per_s"]["median"] / base
        rows.append(row)
        print(f"{size:>6} tasks | {mode:<45} | {fmt(row['tasks_per_s']):>18} tasks/s | x{row['vs_off']:.2f}", flush=True)
    return {"rows": rows, "repeats": repeats}


def suite_protocol(quick: bool, repeats: int) -> dict[str, Any]:
    """Orchestrator pickle round trip (what a Ray call costs to serialise) vs a plain dict."""
    from matrix_core import Turn
    from matrix_plugin_dialogue import DialogueOrchestrator

    n = 200 if quick else 2000
    rows = []
    for turns in (0, 4, 32):
        orch = DialogueOrchestrator.from_row({"topic": "tides"}, row_key="r", trial=0, config={"rounds": 2})
        for _ in range(turns):
            orch.add_turn(Turn(role="assistant", agent="answerer", content="word " * 60, usage={"prompt_tokens": 50, "completion_tokens": 60}))
        plain = orch.model_dump()
        t_orch = spread(timeit.timeit(lambda: pickle.loads(pickle.dumps(orch, protocol=5)), number=n) / n * 1e6 for _ in range(repeats))
        t_dict = spread(timeit.timeit(lambda: pickle.loads(pickle.dumps(plain, protocol=5)), number=n) / n * 1e6 for _ in range(repeats))
        row = {"turns": turns, "bytes": len(pickle.dumps(orch, protocol=5)), "orchestrator_us": t_orch, "plain_dict_us": t_dict,
               "ratio_vs_dict": t_orch["median"] / t_dict["median"]}
        rows.append(row)
        print(f"{turns:>3} turns | {row['bytes']:>7} B | orchestrator {fmt(t_orch, 1)} us | dict {fmt(t_dict, 1)} us | x{row['ratio_vs_dict']:.2f}", flush=True)
    return {"rows": rows, "repeats": repeats}


def suite_client(quick: bool, repeats: int) -> dict[str, Any]:
    """LLMClient per-call cost against a bare httpx POST to the same server, same concurrency.

    The server is simllm replying one token almost instantly, so what is left is client work.
    """
    import httpx

    from matrix_core import Endpoint, LLMClient

    from ._common import SimLLM

    server = SimLLM(time_scale=1000, output_tokens={"dist": "fixed", "mean": 1}, max_num_seqs=1024)
    url = server.url
    body = {"model": "simllm", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}

    async def measure(concurrency: int, calls: int) -> tuple[list[float], list[float]]:
        client = LLMClient([Endpoint(url, "simllm")], max_concurrency_per_endpoint=concurrency)
        raw = httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency))
        sem = asyncio.Semaphore(concurrency)

        async def direct():
            async with sem:
                r = await raw.post(url + "/chat/completions", json=body)
                r.json()

        async def via_client():
            await client.chat(body["messages"], max_tokens=1)

        out: tuple[list[float], list[float]] = ([], [])
        for _ in range(repeats):
            for k, fn in enumerate((direct, via_client)):  # interleaved: drift hits both
                started = time.perf_counter()
                await asyncio.gather(*(fn() for _ in range(calls)))
                out[k].append((time.perf_counter() - started) / calls * 1e6)
        await client.aclose()
        await raw.aclose()
        return out

    rows = []
    try:
        for concurrency in ((1, 8) if quick else (1, 8, 32, 256)):
            direct, client = asyncio.run(measure(concurrency, (50 if quick else 400) if concurrency == 1 else (200 if quick else 2000)))
            row = {"concurrency": concurrency, "direct_us_per_call": spread(direct), "client_us_per_call": spread(client)}
            row["overhead_us"] = row["client_us_per_call"]["median"] - row["direct_us_per_call"]["median"]
            row["ratio"] = row["client_us_per_call"]["median"] / row["direct_us_per_call"]["median"]
            rows.append(row)
            print(f"concurrency {concurrency:>3} | direct httpx {fmt(row['direct_us_per_call'])} us/call | LLMClient {fmt(row['client_us_per_call'])} us/call "
                  f"| x{row['ratio']:.2f}", flush=True)
    finally:
        server.close()
    return {"rows": rows, "repeats": repeats}


DURABILITY_COLUMNS = [
    ("size", "tasks", lambda r: str(r["size"])), ("mode", "mode", lambda r: r["mode"]),
    ("t", "tasks/s", lambda r: fmt(r["tasks_per_s"])), ("h", "hops/s", lambda r: fmt(r["hops_per_s"])), ("v", "÷ off", lambda r: f"{r['vs_off']:.2f}"),
]
PROTOCOL_COLUMNS = [
    ("turns", "turns", lambda r: str(r["turns"])), ("bytes", "bytes", lambda r: str(r["bytes"])),
    ("o", "orchestrator µs", lambda r: fmt(r["orchestrator_us"], 1)), ("d", "plain dict µs", lambda r: fmt(r["plain_dict_us"], 1)),
    ("r", "ratio", lambda r: f"{r['ratio_vs_dict']:.2f}"),
]
CLIENT_COLUMNS = [
    ("c", "concurrency", lambda r: str(r["concurrency"])), ("d", "bare httpx µs/call", lambda r: fmt(r["direct_us_per_call"])),
    ("l", "LLMClient µs/call", lambda r: fmt(r["client_us_per_call"])), ("o", "overhead µs", lambda r: f"{r['overhead_us']:.0f}"),
    ("r", "ratio", lambda r: f"{r['ratio']:.2f}"),
]
