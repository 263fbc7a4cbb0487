"""Actors of the ``servepaths`` suite (importable, so Ray workers can load them).

``SimLLMDeployment`` is a minimal simllm Ray Serve ingress for this benchmark (the serve
engineer's simllm deployment was not ready when it was written): one :class:`SimServer` per
replica, reachable three ways, all answered by the same engine:

- ``engine_url()``: the replica's own aiohttp server (the direct path);
- ``__call__``: HTTP through Serve's proxy (``/NAME/v1/chat/completions``);
- ``call(method, path, body) -> (status, json)``: a ``DeploymentHandle`` call (the contract of
  :mod:`matrix_core.deployments`, which :mod:`matrix_core._private.serve_transport` speaks).

``AgentHost`` stands for an agent host: a Ray actor holding one ``LLMClient``.
"""
from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any, Mapping

import ray


class _Body:
    """What SimServer.chat reads of an aiohttp request."""

    def __init__(self, body: Any):
        self._body = body

    async def json(self) -> Any:
        return self._body


class SimLLMDeployment:
    def __init__(self, settings: Mapping[str, Any]):
        from matrix_plugin_simllm import settings as full_settings
        from matrix_plugin_simllm.server import SimServer

        self.server = SimServer(full_settings(settings))
        self._port: int | None = None
        self._lock: asyncio.Lock | None = None

    async def _started(self) -> int:
        if self._port is None:
            self._lock = self._lock or asyncio.Lock()
            async with self._lock:
                if self._port is None:
                    self._port = await self.server.start("127.0.0.1", 0)
        return self._port

    async def engine_url(self) -> str:
        return f"http://127.0.0.1:{await self._started()}"

    async def pid(self) -> int:
        return os.getpid()

    async def call(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        await self._started()
        if method == "POST" and path.endswith("/chat/completions"):
            response = await self.server.chat(_Body(body))
        elif method == "GET" and path.endswith("/models"):
            response = await self.server.models(None)
        else:
            return 404, {"error": {"message": f"no route {method} {path}", "type": "not_found", "code": 404}}
        return response.status, json.loads(response.body)

    async def __call__(self, request):
        from starlette.responses import Response

        body = await request.json() if request.method == "POST" else None
        status, data = await self.call(request.method, request.url.path, body)
        return Response(json.dumps(data), status_code=status, media_type="application/json")


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
