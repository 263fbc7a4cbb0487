"""The simllm engine behind an httpx transport, in the agent host's own process.

For the scale suite: tens of thousands of concurrent requests cannot each hold a socket
(ephemeral ports, file descriptors), so the HTTP hop is replaced by a direct call into the
same capacity model. Everything above the socket (LLMClient, the runtime) is the real code.
Each process (agent host) gets one engine with the settings below.
"""
from __future__ import annotations

import asyncio
import json
import random

import httpx

SETTINGS = {"max_num_seqs": 1_000_000, "prefill_tps": 1e9, "decode_tps_single": 100.0, "decode_alpha": 0.0, "time_scale": 1.0, "tick_ms": 10}


class SimTransport(httpx.AsyncBaseTransport):
    def __init__(self):
        from matrix_plugin_simllm.engine import Engine

        self.engine = Engine(SETTINGS)
        self.rng = random.Random(0)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        from matrix_plugin_simllm.engine import filler, filler_offset, prompt_tokens

        body = json.loads(await request.aread())
        n = int(body.get("max_tokens") or 16)
        prompt = prompt_tokens(body["messages"])
        await self.engine.submit(prompt, n)
        text = filler(n, filler_offset(self.rng))
        return httpx.Response(200, json={
            "model": "simllm", "system_fingerprint": "matrix-simllm (simulated)",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": n},
        })


def transport() -> SimTransport:
    return SimTransport()


async def _selftest() -> int:
    async with httpx.AsyncClient(transport=transport()) as http:
        r = await http.post("sim://llm/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3})
        return r.json()["usage"]["completion_tokens"]


if __name__ == "__main__":
    print(asyncio.run(_selftest()))
