"""Simulator overhead: CPU time of one standalone simllm process per 1,000 requests.

    python plugins/services/simllm/scripts/bench.py --requests 5000 --concurrency 500

Phase 1 sends ``--requests`` short requests, ``--concurrency`` at a time, and reports the
server's CPU per 1,000 requests (HTTP + JSON + scheduler). Phase 2 holds ``--concurrency``
long requests in flight for ``--hold-s`` and reports the server's CPU per second while the
scheduler ticks over them. The client runs in this process (aiohttp), so it is not counted.
"""
from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time

import aiohttp
import psutil

TIME_SCALE = 10


def cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


async def fire(base: str, n: int, concurrency: int, max_tokens: int) -> None:
    body = {"messages": [{"role": "user", "content": "Say something about load testing, briefly."}], "max_tokens": max_tokens}
    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:
        async def one() -> None:
            async with gate, http.post(base + "/chat/completions", json=body) as r:
                assert r.status == 200, await r.text()
                await r.read()

        await asyncio.gather(*(one() for _ in range(n)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=500)
    ap.add_argument("--hold-s", type=float, default=5.0)
    args = ap.parse_args()

    c = str(args.concurrency)
    server = subprocess.Popen(
        [sys.executable, "-m", "matrix_plugin_simllm", "--port", "0", "--max-num-seqs", c, "--decode-alpha", "0.001",
         "--output-tokens-dist", "fixed", "--output-tokens-mean", "100000", "--output-tokens-max", "100000",
         "--time-scale", str(TIME_SCALE)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        base = server.stdout.readline().split()[3]
        proc = psutil.Process(server.pid)
        asyncio.run(fire(base, 200, 50, 20))  # warm up imports and connections

        before, started = cpu(proc), time.perf_counter()
        asyncio.run(fire(base, args.requests, args.concurrency, 20))
        wall, used = time.perf_counter() - started, cpu(proc) - before
        print(f"{args.requests} requests at concurrency {c}: {wall:.2f}s wall, {args.requests / wall:.0f} req/s, "
              f"server CPU {used:.2f}s = {1000 * used / args.requests * 1000:.0f} ms per 1,000 requests")

        # Each held request decodes for about hold_s real seconds (replies are capped by max_tokens).
        tokens = int(args.hold_s * TIME_SCALE * 100 / (1 + 0.001 * (args.concurrency - 1)))
        before, started = cpu(proc), time.perf_counter()
        asyncio.run(fire(base, args.concurrency, args.concurrency, tokens))
        wall, used = time.perf_counter() - started, cpu(proc) - before
        print(f"{c} requests in flight for {wall:.1f}s: server CPU {used:.2f}s ({100 * used / wall:.1f}% of a core, "
              f"including their {c} HTTP exchanges)")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
