"""The simulated OpenAI-compatible HTTP server (aiohttp) and the Ray actor that hosts it.

Kept apart from the hook module so Ray pickles :class:`SimLLMReplica` by reference.
"""
from __future__ import annotations

import asyncio
import logging
import os
import random
import sys
import time
from collections import Counter
from typing import Any, Callable, Mapping

from aiohttp import web

from matrix_core.deployments import OpenAIIngress

from .engine import Engine, filler, filler_offset, prompt_tokens, sample_length
from .outputs import check_request, reply_json, token_logprobs

log = logging.getLogger("matrix.simllm")

FINGERPRINT = "matrix-simllm (simulated)"
CRASH_EXIT_CODE = 3
FAULT_KINDS = ("429", "500", "timeout", "crash")


def _crash(index: int, received: int) -> None:
    print(f"simllm replica {index}: injected crash on request {received}", file=sys.stderr, flush=True)
    os._exit(CRASH_EXIT_CODE)  # no cleanup on purpose: the process dies as a crashed server would


def _err(status: int, message: str, kind: str, headers: Mapping[str, str] | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    return status, {"error": {"message": message, "type": kind, "code": status}}, dict(headers or {})


class SimServer:
    """One replica: an :class:`Engine`, fault injection and the HTTP routes."""

    def __init__(self, settings: Mapping[str, Any], index: int = 0, on_crash: Callable[[int, int], None] = _crash):
        self.s = settings
        self.index = index
        self.model = str(settings["model"])
        self.engine = Engine(settings)
        self.faults = settings["faults"]
        self.output_spec = settings["output_tokens"]
        # A string seed hashes the same in every process: replica i draws the same stream each run.
        self.rng = random.Random(f"simllm:{settings['seed']}:{index}")
        self.on_crash = on_crash
        self.received = 0
        self.outcomes: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.hanging = 0
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)  # long conversations are large prompts
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics)
        return app

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0 = a free port); returns the port."""
        # handler_cancellation: a client that gives up cancels its handler, so a hung
        # (timeout-fault) or queued request frees its slot, as a real server aborts it.
        self._runner = web.AppRunner(self.app(), access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.engine.start()
        return self._runner.addresses[-1][1]

    async def close(self) -> None:
        await self.engine.stop()
        if self._runner is not None:
            await self._runner.cleanup()

    def draw_fault(self) -> str | None:
        crash_after = self.faults.get("crash_after")
        u = self.rng.random()  # drawn for every request, so the stream does not depend on crash_after
        if crash_after is not None and self.received > int(crash_after):
            return "crash"
        for kind in FAULT_KINDS:
            rate = float(self.faults.get(f"rate_{kind}") or 0.0)
            if u < rate:
                return kind
            u -= rate
        return None

    async def chat(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            status, payload, headers = self._bad(400, "the body is not JSON")
        else:
            status, payload, headers = await self.complete(body)
        return web.json_response(payload, status=status, headers=headers)

    async def complete(self, body: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
        """One chat request: ``(status, json body, headers)`` (the HTTP route and a Serve replica share it)."""
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
            return self._bad(400, "'messages' must be a non-empty list")
        if body.get("stream"):
            return self._bad(400, "simllm does not stream replies; send stream=false")
        if body.get("model") not in (None, "", self.model):
            return self._bad(404, f"The model `{body['model']}` does not exist; this server serves `{self.model}`", "NotFoundError")
        cap = body.get("max_completion_tokens") or body.get("max_tokens")
        if cap is not None and (not isinstance(cap, int) or cap < 1):
            return self._bad(400, f"max_tokens must be a positive integer, got {cap!r}")
        invalid = check_request(body)
        if invalid:
            return self._bad(400, invalid)

        self.received += 1
        fault = self.draw_fault()
        length = sample_length(self.rng, self.output_spec)
        offset = filler_offset(self.rng)
        if fault is not None:
            self.injected[fault] += 1
            if fault == "crash":
                self.on_crash(self.index, self.received)
            elif fault == "429":
                self.outcomes["429"] += 1
                retry = f"{float(self.faults.get('retry_after_s') or 0):g}"
                return _err(429, "simulated rate limit (simllm fault injection)", "rate_limit_error", {"Retry-After": retry})
            elif fault == "500":
                self.outcomes["500"] += 1
                return _err(500, "simulated internal error (simllm fault injection)", "server_error")
            elif fault == "timeout":
                return await self._hang()

        # Choices after the first draw their own length and text (n=1 draws nothing more).
        drawn = [(length, offset)] + [(sample_length(self.rng, self.output_spec), filler_offset(self.rng)) for _ in range(int(body.get("n", 1)) - 1)]
        lengths = [min(k, cap) if cap else k for k, _ in drawn]
        prompt = prompt_tokens(body["messages"])
        try:
            seqs = await asyncio.gather(*(self.engine.submit(prompt, k) for k in lengths))
        except asyncio.CancelledError:
            self.outcomes["client_gone"] += 1
            raise
        self.outcomes["ok"] += 1
        seq = seqs[0]
        return 200, (
            {
                "id": f"chatcmpl-simllm-{self.index}-{self.received}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.model,
                "system_fingerprint": FINGERPRINT,
                "choices": [self._choice(i, body, k, o, cap) for i, (k, o) in enumerate(drawn)],
                "usage": {"prompt_tokens": prompt, "completion_tokens": sum(lengths), "total_tokens": prompt + sum(lengths)},
                # Simulated seconds; not part of the OpenAI schema (clients ignore extra keys).
                "simllm": {"replica": self.index, **seq.timings()},
            }
        ), {}

    def _choice(self, index: int, body: Mapping[str, Any], length: int, offset: int, cap: int | None) -> dict[str, Any]:
        n = min(length, cap) if cap else length
        content = reply_json(body, self.rng) or filler(n, offset)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if self.s["reasoning_tokens"]:
            message["reasoning_content"] = filler(self.s["reasoning_tokens"], (offset + 97) % 8192)
        logprobs = {"content": token_logprobs(content, int(body.get("top_logprobs") or 0), self.rng)} if body.get("logprobs") else None
        return {"index": index, "message": message, "finish_reason": "length" if cap and length > cap else "stop", "logprobs": logprobs}

    async def _hang(self) -> tuple[int, dict[str, Any], dict[str, str]]:
        self.hanging += 1
        try:
            await asyncio.sleep(24 * 3600)
        except asyncio.CancelledError:
            self.outcomes["timeout"] += 1
            raise
        finally:
            self.hanging -= 1
        return _err(504, "simulated hang ended", "timeout")

    def _bad(self, status: int, message: str, kind: str = "invalid_request_error") -> tuple[int, dict[str, Any], dict[str, str]]:
        self.outcomes[str(status)] += 1
        return _err(status, message, kind)

    def models_json(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": FINGERPRINT}]}

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response(self.models_json())

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "simulated": True, "replica": self.index, "model": self.model})

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=self.prometheus(), content_type="text/plain", charset="utf-8")

    def prometheus(self) -> str:
        e = self.engine
        base = f'model="{self.model}",replica="{self.index}"'
        lines: list[str] = []

        def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
            lines.extend((f"# HELP {name} {help_}", f"# TYPE {name} {kind}"))
            lines.extend(f"{name}{{{base}{labels}}} {value:g}" for labels, value in samples)

        metric("simllm_requests_received_total", "counter", "Chat requests received (valid ones).", [("", self.received)])
        metric("simllm_requests_total", "counter", "Chat requests answered or ended, by outcome.",
               [(f',outcome="{k}"', v) for k, v in sorted(self.outcomes.items())])
        metric("simllm_faults_injected_total", "counter", "Injected faults by kind.",
               [(f',kind="{k}"', self.injected.get(k, 0)) for k in FAULT_KINDS])
        metric("simllm_prompt_tokens_total", "counter", "Prompt tokens of finished requests.", [("", e.prompt_total)])
        metric("simllm_generation_tokens_total", "counter", "Completion tokens of finished requests.", [("", e.generated_total)])
        metric("simllm_num_requests_running", "gauge", "Sequences in the batch (prefill or decode).", [("", e.running)])
        metric("simllm_num_requests_decoding", "gauge", "Sequences decoding.", [("", e.n_decoding)])
        metric("simllm_num_requests_waiting", "gauge", "Requests queued beyond max_num_seqs.", [("", e.n_waiting)])
        metric("simllm_num_requests_hanging", "gauge", "Requests held by the timeout fault.", [("", self.hanging)])
        metric("simllm_request_latency_seconds", "summary", "Simulated latency of finished requests.", [])
        lines.append(f"simllm_request_latency_seconds_sum{{{base}}} {e.latency_sum:g}")
        lines.append(f"simllm_request_latency_seconds_count{{{base}}} {e.completed:g}")
        metric("simllm_time_to_first_token_seconds", "summary", "Simulated time to first token.", [])
        lines.append(f"simllm_time_to_first_token_seconds_sum{{{base}}} {e.ttft_sum:g}")
        lines.append(f"simllm_time_to_first_token_seconds_count{{{base}}} {e.completed:g}")
        metric("simllm_simulated_seconds", "gauge", "The engine's simulated clock.", [("", e.now() if e._task else 0.0)])
        metric("simllm_scheduler_ticks_total", "counter", "Scheduler steps taken.", [("", e.ticks)])
        metric("simllm_busy_slot_seconds_total", "counter", "Occupied slots integrated over simulated time; / (max_num_seqs * seconds) = utilisation.", [("", e.slot_seconds)])
        metric("simllm_max_num_seqs", "gauge", "Batch slots of the replica.", [("", e.max_num_seqs)])
        return "\n".join(lines) + "\n"


class SimLLMReplica:
    """A Ray actor serving one :class:`SimServer` on its event loop; killing the actor ends it."""

    def __init__(self, settings: Mapping[str, Any], index: int):
        self._server = SimServer(settings, index)

    async def start(self, host: str, port: int) -> dict[str, Any]:
        import ray

        try:
            bound = await self._server.start(host, port)
        except OSError as exc:  # the address is taken: report it as one line, not a traceback
            return {"error": f"cannot listen on {host}:{port}: {exc.strerror or exc}"}
        return {"port": bound, "ip": ray.util.get_node_ip_address(), "pid": os.getpid()}

    async def stats(self) -> dict[str, Any]:
        s, e = self._server, self._server.engine
        return {"received": s.received, "outcomes": dict(s.outcomes), "injected": dict(s.injected),
                "completed": e.completed, "running": e.running, "waiting": e.n_waiting,
                "max_num_seqs": e.max_num_seqs, "time_scale": e.time_scale, "simulated_s": e.now() if e._task else 0.0,
                "slot_seconds": e.slot_seconds, "latency_sum_s": e.latency_sum,
                "prompt_tokens": e.prompt_total, "generated_tokens": e.generated_total}


class SimLLMDeployment(OpenAIIngress):
    """A Ray Serve replica: one :class:`SimServer` engine answering the proxy's requests
    in-process. Its own HTTP server (the direct path) starts on the first ``engine_url()``."""

    def __init__(self, settings: Mapping[str, Any]):
        from ray import serve

        # The replica's rank seeds its draws, as the index of an actor replica does.
        rank = getattr(serve.get_replica_context(), "rank", 0)
        rank = getattr(rank, "rank", rank)
        self._server = SimServer(settings, rank if isinstance(rank, int) else 0)
        self._url: str | None = None

    async def call(self, method: str, path: str, body: Any) -> tuple:
        self._server.engine.start()  # on the loop that serves requests; idempotent
        if path == "/v1/chat/completions" and method == "POST":
            return await self._server.complete(body)
        if path == "/v1/models":
            return 200, self._server.models_json()
        if path in ("/health", "/"):
            return 200, {"status": "ok", "simulated": True, "replica": self._server.index, "model": self._server.model}
        return 404, {"error": {"message": f"no route {method} {path}", "type": "not_found", "code": 404}}

    async def engine_url(self) -> str:
        if self._url is None:
            host = str(self._server.s["host"])
            port = await self._server.start(host, 0)
            self._url = f"http://{host}:{port}/v1"
        return self._url

    async def stats(self) -> dict[str, Any]:
        e = self._server.engine
        return {"replica": self._server.index, "received": self._server.received, "completed": e.completed}
