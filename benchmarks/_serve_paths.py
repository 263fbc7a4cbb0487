"""The agent host of the ``servepaths`` suite (importable, so Ray workers can load it): a
Ray actor holding one ``LLMClient``, as an agent host does, that fires calls and counts them.
"""
from __future__ import annotations

import asyncio
import time

import ray


@ray.remote(num_cpus=0)
class AgentHost:
    """One agent host's LLM client on one path; fires calls and counts what came back."""

    def __init__(self, base_url: str, transport: str | None, concurrency: int):
        from matrix_core import Endpoint, LLMClient

        self.client = LLMClient([Endpoint(base_url, "simllm", transport=transport)], max_concurrency_per_endpoint=concurrency,
                                max_retries=0, timeout_s=120)
        self.concurrency = concurrency

    async def fire(self, n: int, max_tokens: int) -> dict[str, float]:
        gate = asyncio.Semaphore(self.concurrency)
        messages = [{"role": "user", "content": "Say something about data paths, briefly."}]
        tokens = 0

        async def one() -> None:
            nonlocal tokens
            async with gate:
                result = await self.client.chat(messages, max_tokens=max_tokens)
                tokens += result.usage.completion_tokens

        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return {"elapsed_s": time.perf_counter() - t0, "client_cpu_s": time.process_time() - cpu0, "calls": n, "tokens": tokens}
