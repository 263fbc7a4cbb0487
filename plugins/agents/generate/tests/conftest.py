"""A simllm server in this process, shared by several runs, so a test counts every request."""
from __future__ import annotations

import asyncio
import threading

import pytest

from matrix_plugin_simllm import settings
from matrix_plugin_simllm.server import SimServer


class ThreadedSimServer:
    """One simllm server for several runs, so the test counts every request it gets."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = SimServer(settings({"time_scale": 200, "tick_ms": 2, "output_tokens": {"dist": "uniform", "min": 4, "max": 12}}))
        self.port = asyncio.run_coroutine_threadsafe(self.server.start("127.0.0.1", 0), self.loop).result(60)

    @property
    def received(self) -> int:
        return self.server.received

    def close(self):
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def sim_server():
    server = ThreadedSimServer()
    try:
        yield server
    finally:
        server.close()
