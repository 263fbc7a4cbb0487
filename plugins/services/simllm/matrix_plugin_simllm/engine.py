"""The simulated continuous-batching engine, without HTTP.

Capacity model, in simulated seconds (``time_scale`` of them per real second):

- At most ``max_num_seqs`` sequences run; later arrivals wait in a FIFO queue.
- Prefill: admitted sequences pass one at a time (FCFS) through a prefill pipeline of
  ``prefill_tps`` tokens/s, so a prompt of P tokens takes P / prefill_tps once it is at the
  head. Prefill runs beside decode and does not slow it (a simplification: real engines
  interleave the two).
- Decode: with b sequences decoding, each advances at
  ``r(b) = decode_tps_single / (1 + decode_alpha * (b - 1))`` tokens/s, so the batch
  produces ``b * r(b)`` tokens/s, which approaches ``decode_tps_single / decode_alpha``.
  A sequence of L output tokens is done after L tokens of its own progress.

One scheduler loop advances this model every ``tick_ms`` of real time while anything is
queued or running (and sleeps while idle). Within a tick it steps from event to event
(arrival, prefill end, sequence end), so the simulated timings are exact; only delivery of
a finished reply waits for the end of its tick. Every decoding sequence progresses at the
same rate, so one shared progress counter and a heap of per-sequence targets replace
per-sequence bookkeeping: a tick costs O(events * log batch), not O(batch).
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
from collections import deque
from typing import Any, Mapping

EPS = 1e-9

_VOCABULARY = (
    "the simulated model writes filler words so that replies have the sampled length and "
    "usage counts stay consistent while capacity faults and latency follow the configured "
    "engine this text carries no meaning at all it only occupies tokens on the wire"
).split()
# One fixed pseudo-random word stream; a reply is a slice of it at a random offset.
_STREAM = random.Random(7).choices(_VOCABULARY, k=8192)
_STREAM2 = _STREAM + _STREAM


def filler(n: int, offset: int) -> str:
    if n <= len(_STREAM):
        return " ".join(_STREAM2[offset : offset + n])
    return " ".join(_STREAM2[(offset + i) % len(_STREAM2)] for i in range(n))


def filler_offset(rng: random.Random) -> int:
    return rng.randrange(len(_STREAM))


def prompt_tokens(messages: Any) -> int:
    """About four characters a token, over the text of every message."""
    chars = 0
    for message in messages if isinstance(messages, list) else []:
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):  # content parts: count the text ones
            chars += sum(len(p.get("text") or "") for p in content if isinstance(p, Mapping))
    return max(1, math.ceil(chars / 4))


def sample_length(rng: random.Random, spec: Mapping[str, Any]) -> int:
    """Output tokens from ``output_tokens`` (fixed | uniform | lognormal), within [min, max]."""
    lo, hi = int(spec["min"]), int(spec["max"])
    dist = spec["dist"]
    if dist == "fixed":
        n = int(spec["mean"])
    elif dist == "uniform":
        n = rng.randint(lo, hi)
    else:
        sigma = float(spec["sigma"])
        # mu chosen so that the distribution's mean is `mean`, not its median
        n = round(rng.lognormvariate(math.log(float(spec["mean"])) - sigma * sigma / 2, sigma))
    return min(hi, max(lo, n))


class Sequence:
    __slots__ = ("prompt_tokens", "output_tokens", "prefill_left", "future", "arrived", "admitted", "first_token", "finished", "state")

    def __init__(self, prompt: int, output: int, arrived: float, future: asyncio.Future):
        self.prompt_tokens = prompt
        self.output_tokens = output
        self.prefill_left = float(prompt)
        self.future = future
        self.arrived = arrived
        self.admitted = self.first_token = self.finished = None
        self.state = "waiting"  # -> prefill -> decode -> done | aborted

    def timings(self) -> dict[str, float]:
        return {
            "queue_s": round(self.admitted - self.arrived, 6),
            "ttft_s": round(self.first_token - self.arrived, 6),
            "latency_s": round(self.finished - self.arrived, 6),
        }


class Engine:
    def __init__(self, settings: Mapping[str, Any]):
        self.max_num_seqs = int(settings["max_num_seqs"])
        self.prefill_tps = float(settings["prefill_tps"])
        self.decode_tps = float(settings["decode_tps_single"])
        self.alpha = float(settings["decode_alpha"])
        self.time_scale = float(settings["time_scale"])
        self.tick_s = float(settings["tick_ms"]) / 1000.0
        self.waiting: deque[Sequence] = deque()
        self.prefilling: deque[Sequence] = deque()
        self.decoding: list[tuple[float, int, Sequence]] = []  # (progress target, tie-break, seq)
        self.progress = 0.0  # tokens each decoding sequence has produced since the start
        self.n_waiting = self.n_prefill = self.n_decoding = 0
        self.completed = self.aborted = self.prompt_total = self.generated_total = 0
        self.latency_sum = self.ttft_sum = 0.0
        # Integral of occupied slots over simulated time: / (max_num_seqs * elapsed) is the
        # busy fraction of the replica's capacity (1.0 = every slot busy all the time).
        self.slot_seconds = 0.0
        self.ticks = 0
        self._ids = itertools.count()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._t0 = 0.0

    @property
    def running(self) -> int:
        return self.n_prefill + self.n_decoding

    def rate(self, batch: int) -> float:
        """Tokens/s of each sequence when ``batch`` decode together."""
        return self.decode_tps / (1.0 + self.alpha * (batch - 1))

    def now(self) -> float:
        return (asyncio.get_running_loop().time() - self._t0) * self.time_scale

    def start(self) -> None:
        if self._task is None:
            self._t0 = asyncio.get_running_loop().time()
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def submit(self, prompt: int, output: int) -> asyncio.Future:
        """A future resolved with the finished :class:`Sequence`; cancelling it aborts it."""
        self.start()
        future = asyncio.get_running_loop().create_future()
        seq = Sequence(prompt, max(1, output), self.now(), future)
        future.add_done_callback(lambda f, s=seq: self._abort(s) if f.cancelled() else None)
        self.waiting.append(seq)
        self.n_waiting += 1
        self._wake.set()
        return future

    def _abort(self, seq: Sequence) -> None:
        # The client went away: free its slot now; the queues drop it lazily.
        if seq.state == "waiting":
            self.n_waiting -= 1
        elif seq.state == "prefill":
            self.n_prefill -= 1
        elif seq.state == "decode":
            self.n_decoding -= 1
        else:
            return
        seq.state = "aborted"
        self.aborted += 1

    async def _run(self) -> None:
        last = self.now()
        while True:
            if not (self.n_waiting or self.running):
                self._wake.clear()
                await self._wake.wait()
                # Nothing ran while idle: start the step at the first arrival, not the wake-up.
                last = self.waiting[0].arrived if self.waiting else self.now()
            await asyncio.sleep(self.tick_s)
            now = self.now()
            self.advance(last, now)
            last = now
            self.ticks += 1

    def advance(self, t: float, end: float) -> None:
        """Run the model from simulated time ``t`` to ``end``, event by event."""
        while True:
            self._admit(t)
            while self.prefilling and self.prefilling[0].state != "prefill":
                self.prefilling.popleft()
            while self.decoding and self.decoding[0][2].state != "decode":
                heapq.heappop(self.decoding)
            dt = end - t
            head = self.prefilling[0] if self.prefilling else None
            if head is not None:
                dt = min(dt, head.prefill_left / self.prefill_tps)
            rate = self.rate(self.n_decoding) if self.n_decoding else 0.0
            if rate:
                dt = min(dt, max(0.0, self.decoding[0][0] - self.progress) / rate)
            if self.waiting and self.running < self.max_num_seqs and self.waiting[0].arrived > t:
                dt = min(dt, self.waiting[0].arrived - t)
            dt = max(0.0, dt)
            t += dt
            self.slot_seconds += self.running * dt
            self.progress += rate * dt
            event = False
            if head is not None:
                head.prefill_left -= dt * self.prefill_tps
                if head.prefill_left <= EPS:
                    self.prefilling.popleft()
                    head.state, head.first_token = "decode", t
                    self.n_prefill -= 1
                    self.n_decoding += 1
                    heapq.heappush(self.decoding, (self.progress + head.output_tokens, next(self._ids), head))
                    event = True
            while self.decoding and self.decoding[0][0] - self.progress <= EPS:
                seq = heapq.heappop(self.decoding)[2]
                if seq.state == "decode":
                    self._finish(seq, t)
                    event = True
            if not event and t >= end - EPS:
                return

    def _admit(self, t: float) -> None:
        while self.waiting and self.running < self.max_num_seqs:
            seq = self.waiting[0]
            if seq.state == "aborted":
                self.waiting.popleft()
                continue
            if seq.arrived > t + EPS:
                return
            self.waiting.popleft()
            self.n_waiting -= 1
            self.n_prefill += 1
            seq.state, seq.admitted = "prefill", t
            self.prefilling.append(seq)

    def _finish(self, seq: Sequence, t: float) -> None:
        seq.state, seq.finished = "done", t
        self.n_decoding -= 1
        self.completed += 1
        self.prompt_total += seq.prompt_tokens
        self.generated_total += seq.output_tokens
        self.latency_sum += t - seq.arrived
        self.ttft_sum += seq.first_token - seq.arrived
        if not seq.future.done():
            seq.future.set_result(seq)
