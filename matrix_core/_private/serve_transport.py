"""An httpx transport that sends ``LLMClient`` requests over a Ray Serve ``DeploymentHandle``.

``serve://NAME/v1/chat/completions`` becomes ``serve.get_app_handle(NAME).call.remote("POST",
"/v1/chat/completions", body)`` on the application's ingress (the contract in
:mod:`matrix_core.deployments`: ``call(method, path, body) -> (status, json_body[, headers])``). No
socket, no HTTP parsing, no Serve HTTP proxy: a Ray actor call from the agent host to a
replica that Serve's router picks. The client's retries, backoff, caps and failover apply
unchanged; a Serve error comes back as the HTTP status the client already knows (503 while
the application is missing or has no replica, 500 for an error in the replica).
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Mapping

import httpx

from ..llm import Endpoint, ServiceHandle

SCHEME = "serve"
TRANSPORT = "matrix_core._private.serve_transport:make_transport"


def endpoint_url(app_name: str) -> str:
    """The ``base_url`` of an Endpoint that reaches application ``app_name`` by handle."""
    return f"{SCHEME}://{app_name}/v1"


def client_endpoints(handle: ServiceHandle, client: Mapping[str, Any] | None) -> list[Endpoint]:
    """The endpoints a run's agents call for ``handle``. A Ray Serve application (per-run or a
    service) is reached by ``DeploymentHandle`` unless ``llm.client.serve_path=proxy``: the
    handle path kept the direct path's throughput at LLM saturation where Serve's HTTP proxy
    did not, at less CPU per call (``python -m benchmarks run servepaths``, docs/benchmarks.md)."""
    app = handle.info.get("serve_app")
    if not app or (client or {}).get("serve_path", "handle") != "handle":
        return list(handle.endpoints)
    return [Endpoint(endpoint_url(app), e.model, transport=TRANSPORT) for e in handle.endpoints[:1]]


class ServeHandleTransport(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self._handles: dict[str, Any] = {}

    def _handle(self, app_name: str):
        handle = self._handles.get(app_name)
        if handle is None:
            import ray
            from ray import serve

            if ray.get_runtime_context().get_actor_id() is not None:
                # In an agent host: Serve's router logs its start at INFO to the run's terminal.
                logging.getLogger("ray.serve").setLevel(logging.WARNING)
            handle = self._handles[app_name] = serve.get_app_handle(app_name)
        return handle

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        from ray.serve.exceptions import RayServeException

        app_name = request.url.host
        body = json.loads(await request.aread()) if request.method == "POST" else None
        # httpx leaves timeouts to the transport: without this a replica that never answers holds the call forever.
        timeout = (request.extensions.get("timeout") or {}).get("read")
        response = None
        try:
            response = self._handle(app_name).call.remote(request.method, request.url.path, body)
            status, data, *headers = await asyncio.wait_for(_result(response), timeout)
        except asyncio.TimeoutError:
            response.cancel()
            raise httpx.ReadTimeout(f"Serve application {app_name!r} did not answer in {timeout:g}s", request=request) from None
        except RayServeException as exc:  # the application is gone or not running (yet)
            self._handles.pop(app_name, None)
            return _error(503, f"Serve application {app_name!r} is not available: {exc}")
        except Exception as exc:  # noqa: BLE001 - a replica died or raised: the client retries 5xx
            self._handles.pop(app_name, None)
            return _error(503 if "ActorDied" in type(exc).__name__ or "Unavailable" in type(exc).__name__ else 500,
                          f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
        return httpx.Response(status, json=data, headers=headers[0] if headers else None)


async def _result(response):
    return await response


def _error(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message, "type": "serve_error", "code": status}})


def make_transport() -> ServeHandleTransport:
    return ServeHandleTransport()
