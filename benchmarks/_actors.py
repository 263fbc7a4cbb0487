"""Ray actors the suites measure against (they must live in an importable module)."""
from __future__ import annotations

import asyncio
import copy
import time

import ray


@ray.remote(num_cpus=0)
class Receiver:
    """The far end of a raw actor-to-actor call: takes a message, returns at once."""

    async def deliver(self, message) -> int:
        return 1

    async def deliver_many(self, messages: list) -> int:
        return len(messages)


@ray.remote(num_cpus=0)
class Sender:
    """Sends ``n`` messages to a :class:`Receiver`, one Ray call each, ``window`` in flight."""

    async def blast(self, receiver, message, n: int, window: int) -> float:
        gate = asyncio.Semaphore(window)

        async def one() -> None:
            async with gate:
                await receiver.deliver.remote(message)

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return time.perf_counter() - started

    async def blast_batched(self, receiver, message, n: int, batch: int, outstanding: int) -> float:
        """``n`` messages in lists of ``batch``, ``outstanding`` calls in flight: Matrix's coalescing without Matrix.

        Every message is its own copy, as every task's orchestrator is: a list holding one object
        k times would pickle it once and k - 1 back-references.
        """
        gate = asyncio.Semaphore(outstanding)

        async def one(messages: list) -> None:
            async with gate:
                await receiver.deliver_many.remote(messages)

        sizes = [batch] * (n // batch) + ([n % batch] if n % batch else [])
        batches = [[copy.deepcopy(message) for _ in range(k)] for k in sizes]
        started = time.perf_counter()
        await asyncio.gather(*(one(b) for b in batches))
        return time.perf_counter() - started
