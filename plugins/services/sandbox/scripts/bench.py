"""Sandbox latency and throughput through the runtime service (Ray actor), as agents see it.

    python plugins/services/sandbox/scripts/bench.py [--seconds 5] [--command true]

Prints acquire (cold and from the warm pool), exec and release latencies (median, p90) and
executions/s at concurrency 1, 8 and 32 (one sandbox per concurrent caller).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time

import ray

from matrix_core.plugins import get_plugin_host
from matrix_core.sandbox import RuntimeClient
from matrix_core._private.tool_service import start_runtime


def summary(samples: list[float]) -> str:
    s = sorted(samples)
    return f"median {statistics.median(s) * 1000:.1f} ms, p90 {s[int(len(s) * 0.9)] * 1000:.1f} ms (n={len(s)})"


async def timed(coro):
    started = time.perf_counter()
    value = await coro
    return time.perf_counter() - started, value


async def measure(client: RuntimeClient, command: list[str], seconds: float) -> dict:
    out: dict = {}
    cold, warm, execs, releases = [], [], [], []
    for i in range(20):
        t, box = await timed(client.acquire(f"lat-{i}"))
        (warm if i < 4 else cold).append(t)  # the first warm_pool=4 come from the pool
        t, r = await timed(box.exec(command))
        assert r.ok, r
        execs.append(t)
        t, _ = await timed(box.release())
        releases.append(t)
        await asyncio.sleep(0.05 if i < 4 else 0)
    out["acquire_from_pool"], out["acquire_cold"] = summary(warm), summary(cold)
    out["exec"], out["release"] = summary(execs), summary(releases)
    for concurrency in (1, 8, 32):
        boxes = [await client.acquire(f"c{concurrency}-{i}") for i in range(concurrency)]
        done = 0
        deadline = time.perf_counter() + seconds

        async def worker(box):
            nonlocal done
            while time.perf_counter() < deadline:
                r = await box.exec(command)
                assert r.ok, r
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(b) for b in boxes))
        out[f"execs_per_s_at_{concurrency}"] = round(done / (time.perf_counter() - started), 1)
        await asyncio.gather(*(b.release() for b in boxes))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--command", default="true", help="shell command to run (e.g. \"python3 -c pass\")")
    parser.add_argument("--num-cpus", type=int, default=2)
    args = parser.parse_args()
    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, logging_level="WARNING",
             _temp_dir=tempfile.mkdtemp(prefix="mxbench"), _node_ip_address="127.0.0.1")
    spec = get_plugin_host().get("tool_runtime", "sandbox")
    handle = start_runtime(spec, {"max_sandboxes": 40, "max_concurrency": 32, "warm_pool": 4}, "bench-runtime")
    try:
        result = asyncio.run(measure(RuntimeClient(handle.actor), ["/bin/sh", "-c", args.command], args.seconds))
        print(json.dumps({"command": args.command, **result}, indent=1))
    finally:
        handle.stop()
        ray.shutdown()


if __name__ == "__main__":
    main()
