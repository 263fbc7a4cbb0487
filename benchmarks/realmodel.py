"""Suite ``realmodel``: the embedded model (SmolLM2-135M on llama.cpp) end to end.

Matrix runs ``bench_chat`` against the llama.cpp server at concurrency C (= its slots).
Then a load generator replays exactly the calls that run made (the same prompts and
``max_tokens``), C at a time with no turn dependencies, straight at the same server: the
most that server can give at that concurrency. Both report completion tokens/s.
"""
from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from typing import Any

import httpx

from ._common import fmt, spread
from .workload import messages_for, register

CONCURRENCY = 8


def run_matrix(url: str, model: str, tasks: int, shape: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[list, int]]]:
    import matrix_core
    from matrix_core.testing import read_records

    register()
    with tempfile.TemporaryDirectory() as tmp:
        summary = matrix_core.run("bench_chat", [
            f"output.path={tmp}/out.jsonl", f"dataset.size={tasks}", f"llm.base_url={url}", f"llm.model={model}",
            f"llm.client.max_concurrency_per_endpoint={CONCURRENCY}", "llm.client.timeout_s=600",
            f"run.max_concurrent_tasks={CONCURRENCY}", f"agents.chat.max_in_flight={CONCURRENCY}", "+llm.client.params.temperature=0",
            *(f"shape.{k}={v}" for k, v in shape.items()),
        ])
        records = read_records(f"{tmp}/out.jsonl")
    assert summary.failed == 0, f"{summary.failed} tasks failed"
    wall = max(r["state"]["t1"] for r in records) - min(r["state"]["t0"] for r in records)
    tokens = sum(r["state"]["tokens"] for r in records)
    calls = []
    for r in records:
        replies = [t["content"] or "" for t in r["history"]]
        calls += [(messages_for(replies[:k]), r["state"]["plan"][k]) for k in range(len(replies))]
    return {"tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall}, calls


def run_load(url: str, model: str, calls: list[tuple[list, int]]) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=CONCURRENCY), timeout=600) as http:
            queue = list(calls)
            tokens = 0

            async def worker() -> None:
                nonlocal tokens
                while queue:
                    messages, max_tokens = queue.pop()
                    r = await http.post(url + "/chat/completions", json={"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0})
                    r.raise_for_status()
                    tokens += r.json()["usage"]["completion_tokens"]

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
            wall = time.perf_counter() - started
        return {"tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall}

    return asyncio.run(main())


def suite_realmodel(quick: bool, repeats: int) -> dict[str, Any]:
    from matrix_plugin_llamacpp import start_llamacpp

    tasks = 4 if quick else 16
    shape = {"seed": 0, "turns_mean": 2.0 if quick else 3.0, "turns_sigma": 0.5, "max_turns": 6, "tokens_mean": 16.0 if quick else 64.0, "tokens_sigma": 0.5}
    handle = start_llamacpp({"port": 0, "n_parallel": CONCURRENCY})
    url, model = handle.endpoints[0].base_url, handle.endpoints[0].model
    runs: dict[str, list[dict]] = {"matrix": [], "load generator": []}
    try:
        run_load(url, model, [([{"role": "user", "content": "hi"}], 4)])  # first-request costs out of the numbers
        for _ in range(repeats):
            result, calls = run_matrix(url, model, tasks, shape)
            runs["matrix"].append(result)
            runs["load generator"].append(run_load(url, model, calls))
    finally:
        handle.stop()
    limit = statistics.median(r["tokens_per_s"] for r in runs["load generator"])
    rows = []
    for system, results in runs.items():
        row = {"system": system, "concurrency": CONCURRENCY, **{m: spread(r[m] for r in results) for m in ("tokens_per_s", "tokens", "wall_s")}}
        row["vs_limit"] = row["tokens_per_s"]["median"] / limit
        rows.append(row)
        print(f"{system:<15} | {fmt(row['tokens_per_s'], 1):>20} completion tok/s | x{row['vs_limit']:.2f} of the server's limit", flush=True)
    return {"rows": rows, "repeats": repeats, "tasks": tasks, "shape": shape, "model": model, "figure": _figure(rows)}


COLUMNS = [
    ("system", "system", lambda r: r["system"]),
    ("c", "concurrency", lambda r: str(r["concurrency"])),
    ("tps", "completion tokens/s", lambda r: fmt(r["tokens_per_s"], 1)),
    ("vs", "÷ server limit", lambda r: f"{r['vs_limit']:.2f}"),
    ("tokens", "tokens", lambda r: fmt(r["tokens"])),
]


def _figure(rows: list[dict]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    med = [r["tokens_per_s"]["median"] for r in rows]
    err = [[m - r["tokens_per_s"]["min"] for m, r in zip(med, rows)], [r["tokens_per_s"]["max"] - m for m, r in zip(med, rows)]]
    ax.bar([r["system"] for r in rows], med, yerr=err, capsize=4)
    ax.set_ylabel("completion tokens/s")
    ax.set_title(f"Embedded llama.cpp model, concurrency {CONCURRENCY}")
    return fig
