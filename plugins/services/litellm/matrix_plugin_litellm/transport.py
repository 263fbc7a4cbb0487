"""An httpx transport that answers ``litellm://`` chat requests by calling ``litellm.acompletion``.

``LLMClient`` mounts it in each agent host (``Endpoint.transport``), so its retries, backoff,
concurrency caps and failover apply unchanged: LiteLLM's own retries are off, and its
exceptions come back as the HTTP statuses the client already knows (429 with Retry-After,
503/504 for connection errors and timeouts, 4xx for errors a retry would not fix).
"""
from __future__ import annotations

import json
import os
import re

import httpx

from . import credentials


def import_litellm():
    # Otherwise importing litellm fetches its price table from the internet, in every process.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True  # no "Give Feedback / Get Help" banners on stdout
    return litellm


class LiteLLMTransport(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST" or not request.url.path.endswith("/chat/completions"):
            return _error(404, f"the litellm transport answers POST .../chat/completions only, not {request.method} {request.url.path}")
        try:
            settings = credentials.decode(request.headers.get("authorization"))
        except ValueError as exc:
            return _error(401, str(exc))
        key = None
        if settings.get("key_env"):
            try:
                key = credentials.lookup(settings["key_env"], settings.get("secrets_file"))
            except OSError as exc:
                return _error(401, f"{settings['secrets_file']} cannot be read in this process ({exc.strerror})")
            if key is None:
                return _error(401, f"{settings['key_env']} is not set in this process (pid {os.getpid()}): the Ray workers need it too")
        body = json.loads(await request.aread())
        if body.get("stream"):
            return _error(400, "streaming is not supported through the litellm transport")
        timeout = (request.extensions.get("timeout") or {}).get("read")
        extra = {k: settings[k] for k in ("api_base", "api_version") if settings.get(k)}
        litellm = import_litellm()
        try:
            # max_retries=0: the client retries; _skip_mcp_handler: litellm 1.106 otherwise imports
            # its MCP proxy code (and the optional `mcp` package) for any request with `tools`.
            result = await litellm.acompletion(**body, api_key=key, timeout=timeout, max_retries=0, _skip_mcp_handler=True, **extra)
        except Exception as exc:  # litellm maps provider errors to its own types; anything else is a 5xx too
            headers = {"Retry-After": str(wait)} if (wait := retry_after(exc)) is not None else {}
            return _error(status_for(exc), scrub(str(exc) or type(exc).__name__, key), type(exc).__name__, headers)
        return httpx.Response(200, json=result.model_dump(mode="json"))


def make_transport() -> LiteLLMTransport:
    return LiteLLMTransport()


def status_for(exc: BaseException) -> int:
    import openai

    litellm = import_litellm()
    chain = _chain(exc)
    if any(isinstance(e, (litellm.Timeout, openai.APITimeoutError, httpx.TimeoutException, TimeoutError)) for e in chain):
        return 504
    code = getattr(exc, "status_code", None)
    if isinstance(code, int) and 400 <= code < 500:
        return code
    # litellm reports a refused connection as InternalServerError; the cause says what happened.
    if any(isinstance(e, (litellm.APIConnectionError, openai.APIConnectionError, httpx.TransportError, ConnectionError)) for e in chain):
        return 503
    return code if isinstance(code, int) and 500 <= code < 600 else 500


def retry_after(exc: BaseException) -> float | None:
    for source in (getattr(exc, "litellm_response_headers", None), getattr(getattr(exc, "response", None), "headers", None), getattr(exc, "headers", None)):
        if not source:
            continue
        headers = httpx.Headers(source)
        try:
            if headers.get("retry-after") is not None:
                return max(0.0, float(headers["retry-after"]))
            if headers.get("retry-after-ms") is not None:
                return max(0.0, float(headers["retry-after-ms"]) / 1000)
        except ValueError:  # an HTTP date: let the client back off on its own
            return None
    return None


def scrub(text: str, secret: str | None) -> str:
    """``text`` without ``secret``, nor any 6+ character piece of it (providers echo "sk-ab12...wxyz")."""
    if not secret:
        return text
    text = text.replace(secret, "***")
    return re.sub(r"[A-Za-z0-9_\-]{6,}", lambda m: "***" if m.group(0) in secret else m.group(0), text)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _error(status: int, message: str, kind: str = "matrix_litellm", headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": " ".join(message.split()), "type": kind}}, headers=headers)
