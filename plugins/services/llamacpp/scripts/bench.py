"""Completion tokens/s through LLMClient against the embedded server, by concurrency.

    python plugins/services/llamacpp/scripts/bench.py --threads 2 --concurrency 1 4 8
"""
from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time

import ray

from matrix_core.llm import LLMClient
from matrix_plugin_llamacpp import start_llamacpp

TOPICS = ["volcanoes", "the printing press", "honey bees", "tides", "the Roman roads", "photosynthesis", "glaciers", "jazz"]


async def level(client: LLMClient, concurrency: int, requests: int, max_tokens: int) -> tuple[int, float]:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> int:
        async with gate:
            r = await client.chat(
                [{"role": "user", "content": f"Explain {TOPICS[i % len(TOPICS)]} in detail."}],
                max_tokens=max_tokens,
                temperature=0.7,
            )
            return r.usage.completion_tokens

    started = time.perf_counter()
    tokens = sum(await asyncio.gather(*(one(i) for i in range(requests))))
    return tokens, time.perf_counter() - started


async def bench(endpoints, args) -> None:
    client = LLMClient(endpoints, max_concurrency_per_endpoint=max(args.concurrency), timeout_s=600)
    await client.chat([{"role": "user", "content": "hi"}], max_tokens=4)  # first-request costs out of the numbers
    for c in args.concurrency:
        tokens, wall = await level(client, c, max(args.min_requests, 2 * c), args.max_tokens)
        print(f"threads={args.threads} concurrency={c}: {tokens} tokens in {wall:.1f}s = {tokens / wall:.1f} tok/s", flush=True)
    await client.aclose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--min-requests", type=int, default=4)
    args = ap.parse_args()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING",
             _temp_dir=os.path.join(tempfile.gettempdir(), f"llamacpp-bench-{os.getpid()}"))
    handle = start_llamacpp({"port": 0, "threads": args.threads, "n_parallel": max(8, *args.concurrency)})
    try:
        asyncio.run(bench(handle.endpoints, args))
    finally:
        handle.stop()
        ray.shutdown()


if __name__ == "__main__":
    main()
