"""An async client for OpenAI-compatible chat endpoints, shared by every agent of a host.

Retries 429 / 5xx / timeouts / connection errors with exponential backoff and jitter
(honouring ``Retry-After``), caps concurrent requests per endpoint, balances over several
endpoints by fewest requests in flight and fails over away from a dead one. ``sticky_key``
pins one task to one endpoint while it is healthy (prefix-cache reuse).
Every choice, logprobs and reasoning content are kept (:class:`LLMResult`); with a
``cache`` (:class:`matrix_core.LLMCache`) a repeated request is answered from disk.
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
import time
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import certifi
import httpx

from ._private.metrics import LLMMetrics, error_kind
from ._private.secrets import scrub
from ._private.tool_calling import ToolCalling
from .errors import MatrixError
from .options import LLMClientOptions
from .protocol import Choice, ToolCall, Turn, Usage

if TYPE_CHECKING:
    from ._private.llm_cache import LLMCache

log = logging.getLogger("matrix.llm")

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
CONNECTIONS_PER_POOL = 8
MAX_POOLS = 64


@dataclass(frozen=True)
class Endpoint:
    """One OpenAI-compatible server: ``base_url`` ends in ``/v1``.

    ``transport`` ("module:factory") names a callable returning an ``httpx.AsyncBaseTransport``
    that answers this endpoint's requests in-process instead of over the network (the fake
    LLM; a client library such as LiteLLM). The client's retries, limits and failover apply
    either way.
    """

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    transport: str | None = None


@dataclass
class ServiceHandle:
    """A started service: its endpoints and how to stop it (a no-op for attached servers)."""

    endpoints: list[Endpoint]
    stop: Callable[[], None] = lambda: None
    info: dict[str, Any] = field(default_factory=dict)


class LLMError(MatrixError):
    """An LLM call failed for good (after retries, or with a non-retryable answer)."""


@dataclass
class LLMResult:
    content: str | None
    tool_calls: list[ToolCall]
    usage: Usage
    latency_s: float
    model: str
    endpoint: str
    finish_reason: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    resource: str | None = None  # the run's LLM resource that answered (set by the role's client view)
    reasoning_content: str | None = None
    logprobs: list[dict[str, Any]] | None = None  # the first choice's ``logprobs.content``
    choices: list[Choice] = field(default_factory=list)  # every choice, the first included
    cached: bool = False  # answered from the response cache
    tool_calling: str | None = None  # "native" or "prompted" when tools were offered

    def to_turn(self, agent: str | None = None, role: str = "assistant") -> Turn:
        malformed = [c.id for c in self.tool_calls if isinstance(c.arguments, str)]
        meta: dict[str, Any] = {"malformed_tool_calls": malformed} if malformed else {}
        if self.resource is not None:
            meta["llm"] = {"resource": self.resource, "model": self.model}
        if self.tool_calling:
            meta["tool_calling"] = self.tool_calling
        return Turn(
            role=role,
            content=self.content,
            agent=agent,
            tool_calls=self.tool_calls,
            usage=self.usage,
            latency_s=self.latency_s,
            # Malformed calls are the model's fault, recorded on the turn: the workflow decides what follows.
            meta=meta,
            reasoning_content=self.reasoning_content,
            finish_reason=self.finish_reason,
            model=self.model or None,
            logprobs=self.logprobs,
            choices=self.choices if len(self.choices) > 1 else None,
            cached=True if self.cached else None,
        )


@dataclass
class _EndpointState:
    endpoint: Endpoint
    semaphore: asyncio.Semaphore
    in_flight: int = 0
    dead_until: float = 0.0
    failures: int = 0

    @property
    def alive(self) -> bool:
        return time.monotonic() >= self.dead_until


def to_openai_messages(turns: Iterable[Turn], system: str | None = None) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for turn in turns:
        msg: dict[str, Any] = {"role": turn.role, "content": turn.content}
        if turn.tool_calls:
            msg["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {
                        "name": c.name,
                        "arguments": c.arguments if isinstance(c.arguments, str) else json.dumps(c.arguments),
                    },
                }
                for c in turn.tool_calls
            ]
        if turn.tool_call_id:
            msg["tool_call_id"] = turn.tool_call_id
        messages.append(msg)
    return messages


def _parse_tool_calls(message: Mapping[str, Any]) -> list[ToolCall]:
    calls = []
    for i, call in enumerate(message.get("tool_calls") or []):
        fn = call.get("function") or {}
        args: Any = fn.get("arguments") or "{}"
        try:
            args = json.loads(args) if isinstance(args, str) else args
        except json.JSONDecodeError:
            pass  # kept as the raw string: a malformed call marks the turn, not the run
        calls.append(ToolCall(id=call.get("id") or f"call_{i}", name=fn.get("name", ""), arguments=args))
    return calls


class LLMClient:
    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        *,
        max_concurrency_per_endpoint: int = 64,
        timeout_s: float = 120.0,
        max_retries: int = 4,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 20.0,
        dead_cooldown_s: float = 5.0,
        default_params: Mapping[str, Any] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        cache: "LLMCache | None" = None,
        tool_calling: str = "native",
        resource: str = "default",
    ):
        if not endpoints:
            raise LLMError("LLM client has no endpoints")
        self._states = [
            _EndpointState(e, asyncio.Semaphore(max_concurrency_per_endpoint)) for e in endpoints
        ]
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.dead_cooldown_s = dead_cooldown_s
        self.default_params = dict(default_params or {})
        self.cache = cache
        self.tool_calling = ToolCalling(tool_calling)  # native | prompted | auto (probed once); configs default to auto
        self._metrics = LLMMetrics(resource)  # Prometheus series of this LLM resource
        mounts = {}
        if transport is None:
            for e in endpoints:
                if e.transport:
                    scheme = e.base_url.split("://", 1)[0] + "://"
                    mounts.setdefault(scheme, _load_transport(e.transport))
        # httpcore's pool does work proportional to its connections on every request and
        # response (measured: 14 ms of CPU per call with 128 connections in one pool, under
        # 2 ms with 16 pools of 8), so connections are spread over small pools.
        # In-process transports (tests, simulators) hold no connections: one pool.
        total = max_concurrency_per_endpoint * len(endpoints)
        pools = 1 if transport is not None or mounts else min(MAX_POOLS, max(1, -(-total // CONNECTIONS_PER_POOL)))
        tls = ssl.create_default_context(cafile=certifi.where()) if pools > 1 else True  # one CA load, not one per pool
        self._pools = [
            httpx.AsyncClient(
                transport=transport,
                mounts=mounts or None,
                verify=tls,
                timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
                limits=httpx.Limits(max_connections=-(-total // pools), max_keepalive_connections=None),
            )
            for _ in range(pools)
        ]
        self._pool_load = [0] * pools

    @property
    def endpoints(self) -> list[Endpoint]:
        return [s.endpoint for s in self._states]

    def _pick(self, sticky_key: str | None, exclude: set[int]) -> _EndpointState:
        candidates = [i for i, s in enumerate(self._states) if i not in exclude and s.alive]
        if not candidates:
            candidates = [i for i in range(len(self._states)) if i not in exclude] or list(range(len(self._states)))
        if sticky_key is not None:
            return self._states[candidates[zlib.crc32(sticky_key.encode()) % len(candidates)]]
        return min((self._states[i] for i in candidates), key=lambda s: s.in_flight)

    async def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        json_schema: Mapping[str, Any] | None = None,
        sticky_key: str | None = None,
        _direct: bool = False,
        **params: Any,
    ) -> LLMResult:
        if tools and not _direct:  # native, or prompted for models without tool calling
            return await self.tool_calling.chat(self, messages, tools, json_schema=json_schema, sticky_key=sticky_key, **params)
        body: dict[str, Any] = {**self.default_params, **params, "messages": list(messages)}
        if tools:
            body["tools"] = list(tools)
        if json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": dict(json_schema), "strict": True},
            }
        if self.cache is not None:
            return await self._cached_chat(body, sticky_key)
        return await self._send(body, sticky_key)

    async def _send(self, body: dict[str, Any], sticky_key: str | None) -> LLMResult:
        tried: set[int] = set()
        last_error = "no attempt"
        for attempt in range(self.max_retries + 1):
            state = self._pick(sticky_key, tried if len(tried) < len(self._states) else set())
            try:
                result = await self._call(state, body)
                self._metrics.ok(result)
                return result
            except _Retryable as exc:
                self._metrics.error(exc.kind, retrying=attempt < self.max_retries)
                last_error = str(exc)
                if exc.endpoint_down:
                    state.failures += 1
                    state.dead_until = time.monotonic() + self.dead_cooldown_s
                    tried.add(self._states.index(state))
                if attempt == self.max_retries:
                    break
                delay = exc.retry_after
                if delay is None:
                    delay = min(self.backoff_max_s, self.backoff_base_s * 2**attempt) * random.uniform(0.5, 1.0)
                await asyncio.sleep(delay)
        raise LLMError(f"LLM call failed after {self.max_retries + 1} attempts: {last_error}")

    async def _call(self, state: _EndpointState, body: dict[str, Any]) -> LLMResult:
        endpoint = state.endpoint
        body.setdefault("model", endpoint.model)
        headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
        url = endpoint.base_url.rstrip("/") + "/chat/completions"
        async with state.semaphore:
            state.in_flight += 1
            started = time.perf_counter()
            try:
                pool = min(range(len(self._pools)), key=self._pool_load.__getitem__) if len(self._pools) > 1 else 0
                self._pool_load[pool] += 1
                try:
                    response = await self._pools[pool].post(url, json=body, headers=headers)
                finally:
                    self._pool_load[pool] -= 1
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                raise _Retryable(f"{endpoint.base_url} unreachable ({type(exc).__name__})", endpoint_down=True, kind="connection") from None
            except httpx.TimeoutException:
                raise _Retryable(f"{endpoint.base_url} timed out after {self.timeout_s:g}s", kind="timeout") from None
            finally:
                state.in_flight -= 1
        latency = time.perf_counter() - started
        if response.status_code in RETRYABLE_STATUS:
            raise _Retryable(
                f"{endpoint.base_url} answered HTTP {response.status_code}: {_short(scrub(response.text, [endpoint.api_key]))}",
                retry_after=_retry_after(response),
                kind=error_kind(response.status_code),
            )
        if response.status_code >= 400:
            self._metrics.error(error_kind(response.status_code), retrying=False)
            raise LLMError(f"{endpoint.base_url} answered HTTP {response.status_code}: {_short(scrub(response.text, [endpoint.api_key]))}")
        state.failures = 0
        try:
            return _parse_completion(response.json(), body["model"], endpoint.base_url, latency)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            self._metrics.error("malformed", retrying=False)
            raise LLMError(f"{endpoint.base_url} sent a malformed completion: {exc}") from None

    async def _cached_chat(self, body: dict[str, Any], sticky_key: str | None) -> LLMResult:
        """The response cache in front of :meth:`_send`: a hit makes no call at all."""
        from ._private.llm_cache import request_key

        key = request_key({"model": self._states[0].endpoint.model, **body})
        started = time.perf_counter()
        data = await self.cache.get(key)
        if data is not None:
            result = _parse_completion(data, data.get("model") or "", "cache", time.perf_counter() - started)
            result.cached = True
            return result
        result = await self._send(body, sticky_key)
        await self.cache.put(key, result.raw)
        return result

    def cache_stats(self) -> dict[str, int] | None:
        return self.cache.stats() if self.cache is not None else None

    async def aclose(self) -> None:
        await asyncio.gather(*(pool.aclose() for pool in self._pools))


def _parse_completion(data: Mapping[str, Any], model: str, endpoint: str, latency: float) -> LLMResult:
    """Everything a completion holds: every choice, logprobs, reasoning, the served model."""
    choices = [_parse_choice(c) for c in data["choices"]]
    first = choices[0]
    usage = data.get("usage") or {}
    return LLMResult(
        content=first.content,
        tool_calls=first.tool_calls,
        usage=Usage(prompt_tokens=usage.get("prompt_tokens") or 0, completion_tokens=usage.get("completion_tokens") or 0),
        latency_s=latency,
        model=data.get("model") or model,
        endpoint=endpoint,
        finish_reason=first.finish_reason,
        raw=dict(data),
        reasoning_content=first.reasoning_content,
        logprobs=first.logprobs,
        choices=choices,
    )


def _parse_choice(choice: Mapping[str, Any]) -> Choice:
    message = choice.get("message") or {}
    logprobs = choice.get("logprobs")
    return Choice(
        content=message.get("content"),
        # vLLM and SGLang send ``reasoning_content``; newer vLLM calls it ``reasoning``.
        reasoning_content=message.get("reasoning_content") or message.get("reasoning"),
        finish_reason=choice.get("finish_reason"),
        tool_calls=_parse_tool_calls(message),
        logprobs=logprobs.get("content") if isinstance(logprobs, Mapping) else None,
    )


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None, endpoint_down: bool = False, kind: str = "connection"):
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after
        self.endpoint_down = endpoint_down


def _load_transport(ref: str) -> httpx.AsyncBaseTransport:
    import importlib

    module, _, name = ref.partition(":")
    try:
        return getattr(importlib.import_module(module), name)()
    except (ImportError, AttributeError) as exc:
        raise LLMError(f"cannot load LLM transport {ref!r}: {exc}") from None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def client_from_config(endpoints: Sequence[Endpoint], cfg: LLMClientOptions | Mapping[str, Any],
                       cache: "LLMCache | None" = None, resource: str = "default") -> LLMClient:
    """Build the client from the ``llm.client`` config section (typed, or a plain mapping), the run's
    response cache, and the name of the LLM resource it serves (metrics label)."""
    if not isinstance(cfg, LLMClientOptions):
        from .options import parse

        cfg = parse(LLMClientOptions, cfg, "llm.client")  # a bad value: one line naming the key
    return LLMClient(
        endpoints,
        max_concurrency_per_endpoint=cfg.max_concurrency_per_endpoint,
        timeout_s=cfg.timeout_s,
        max_retries=cfg.max_retries,
        backoff_base_s=cfg.backoff_base_s,
        backoff_max_s=cfg.backoff_max_s,
        default_params=cfg.params,
        cache=cache,
        tool_calling=cfg.tool_calling,
        resource=resource,
    )
