"""Suite ``simfit``: is simllm's capacity model faithful? Fit it to the embedded model and compare.

1. The embedded llama.cpp server (SmolLM2-135M, 16 slots) answers fixed-length replies
   (``ignore_eos``, ``REPLY`` tokens) at concurrency 1, 2, 4, 8 and 16: completion tokens/s of
   the whole server and each sequence's own rate (reply tokens over its latency).
2. simllm's decode model, ``r(b) = decode_tps_single / (1 + decode_alpha * (b - 1))`` per
   sequence, so ``b * r(b)`` tokens/s for the server: ``decode_tps_single`` and ``decode_alpha``
   are fitted to the measured server throughput by least squares on its logarithm (relative
   error, every concurrency alike). Prefill is folded into that rate (prompts here are ~30
   tokens; ``prefill_tps`` is set out of the way).
3. simllm with the fitted constants (16 seqs, time scale 1) takes the same load: both
   curves side by side, and their ratio.
"""
from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from ._common import SimLLM, fmt, spread

CONCURRENCIES = (1, 2, 4, 8, 16)
REPLY = 48
SLOTS = 16


async def _curve_point(url: str, model: str, concurrency: int, per_worker: int) -> dict[str, float]:
    from matrix_core import Endpoint, LLMClient

    llm = LLMClient([Endpoint(base_url=url, model=model)], max_concurrency_per_endpoint=concurrency, timeout_s=600, max_retries=1)
    rates, tokens = [], 0

    async def worker(k: int) -> None:
        nonlocal tokens
        for i in range(per_worker):
            t0 = time.perf_counter()
            r = await llm.chat([{"role": "user", "content": f"Count slowly from {k * 100 + i} upwards, one number a line."}],
                               max_tokens=REPLY, temperature=0, ignore_eos=True)
            n = r.usage.completion_tokens
            tokens += n
            rates.append(n / (time.perf_counter() - t0))

    try:
        await llm.chat([{"role": "user", "content": "hi"}], max_tokens=2)  # warm: connection, slot
        started = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        wall = time.perf_counter() - started
    finally:
        await llm.aclose()
    return {"tokens_per_s": tokens / wall, "per_seq_tps": sum(rates) / len(rates)}


def curve(url: str, model: str, per_worker: int) -> dict[int, dict[str, float]]:
    return {c: asyncio.run(_curve_point(url, model, c, per_worker)) for c in CONCURRENCIES}


def fit(points: dict[int, dict[str, float]]) -> dict[str, float]:
    """The constants whose throughput curve ``b * d / (1 + alpha (b - 1))`` is nearest in relative terms.

    Least squares on log throughput, so every concurrency weighs alike (a fit of 1/r is ruled by
    the slowest per-sequence rates). For a given alpha the best d is closed form (a geometric
    mean); alpha comes from a coarse grid, then a golden-section refinement around its best.
    """
    logs = {c: math.log(p["tokens_per_s"]) for c, p in points.items()}

    def best_d(alpha: float) -> tuple[float, float]:
        residuals = [logs[c] - math.log(c / (1 + alpha * (c - 1))) for c in logs]
        log_d = sum(residuals) / len(residuals)
        return sum((r - log_d) ** 2 for r in residuals), log_d

    grid = [i / 100 for i in range(401)]
    centre = min(grid, key=lambda a: best_d(a)[0])
    lo, hi = max(0.0, centre - 0.01), centre + 0.01
    golden = (math.sqrt(5) - 1) / 2
    for _ in range(80):
        a, b = hi - golden * (hi - lo), lo + golden * (hi - lo)
        lo, hi = (lo, b) if best_d(a)[0] <= best_d(b)[0] else (a, hi)
    alpha = (lo + hi) / 2
    return {"decode_tps_single": math.exp(best_d(alpha)[1]), "decode_alpha": alpha}


def suite_simfit(quick: bool, repeats: int) -> dict[str, Any]:
    from matrix_plugin_llamacpp import start_llamacpp

    per_worker = 1 if quick else 3
    handle = start_llamacpp({"port": 0, "n_parallel": SLOTS, "ctx_size": SLOTS * 512})
    try:
        url, model = handle.endpoints[0].base_url, handle.endpoints[0].model
        real = [curve(url, model, per_worker) for _ in range(repeats)]
    finally:
        handle.stop()
    merged = {c: {k: sorted(r[c][k] for r in real)[len(real) // 2] for k in ("tokens_per_s", "per_seq_tps")} for c in CONCURRENCIES}
    constants = fit(merged)
    server = SimLLM(max_num_seqs=SLOTS, decode_tps_single=constants["decode_tps_single"], decode_alpha=constants["decode_alpha"],
                    prefill_tps=1e9, time_scale=1, tick_ms=5, output_tokens={"dist": "fixed", "mean": 4096, "max": 4096})
    try:
        sim = [curve(server.url, "simllm", per_worker) for _ in range(repeats)]
    finally:
        server.close()
    rows = []
    for c in CONCURRENCIES:
        row = {"concurrency": c, "llamacpp": spread(r[c]["tokens_per_s"] for r in real), "simllm": spread(s[c]["tokens_per_s"] for s in sim),
               "llamacpp_per_seq": spread(r[c]["per_seq_tps"] for r in real), "simllm_per_seq": spread(s[c]["per_seq_tps"] for s in sim)}
        row["sim_vs_real"] = row["simllm"]["median"] / row["llamacpp"]["median"]
        rows.append(row)
        print(f"simfit c={c:>2} llama.cpp {fmt(row['llamacpp'], 1)} tok/s  simllm {fmt(row['simllm'], 1)} tok/s  x{row['sim_vs_real']:.2f}", flush=True)
    return {"rows": rows, "repeats": repeats, "fitted": constants, "reply_tokens": REPLY, "slots": SLOTS}


COLUMNS = [
    ("concurrency", "concurrency", lambda r: str(r["concurrency"])),
    ("real", "llama.cpp tok/s", lambda r: fmt(r["llamacpp"], 1)),
    ("sim", "simllm (fitted) tok/s", lambda r: fmt(r["simllm"], 1)),
    ("ratio", "simllm ÷ llama.cpp", lambda r: f"{r['sim_vs_real']:.2f}"),
    ("real_seq", "llama.cpp tok/s per sequence", lambda r: fmt(r["llamacpp_per_seq"], 1)),
    ("sim_seq", "simllm tok/s per sequence", lambda r: fmt(r["simllm_per_seq"], 1)),
]
