"""LLMClient over a Ray Serve DeploymentHandle (``serve://NAME/v1``, no HTTP client): a real
simllm Serve deployment answers, Serve's errors come back as statuses the client knows."""
from __future__ import annotations

import asyncio

import pytest

from matrix_core import Endpoint, LLMClient, LLMError
from matrix_core._private.serve_transport import TRANSPORT, endpoint_url


def chat(endpoint: Endpoint, **kwargs):
    async def go():
        client = LLMClient([endpoint], timeout_s=60, **kwargs)
        try:
            return await asyncio.gather(*(client.chat([{"role": "user", "content": f"hi {i}"}], max_tokens=8) for i in range(6)))
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_llm_client_over_a_deployment_handle(matrix_ray):
    from matrix_plugin_simllm import start_simllm

    service = start_simllm({"replicas": 2, "time_scale": 50})
    try:
        app = service.info["serve_app"]
        results = chat(Endpoint(endpoint_url(app), service.endpoints[0].model, transport=TRANSPORT), max_retries=0)
        assert len(results) == 6 and all(r.content and r.usage.completion_tokens == 8 for r in results)
        assert {r.model for r in results} == {service.endpoints[0].model}
    finally:
        service.stop()


def test_missing_application_is_a_readable_503(matrix_ray):
    with pytest.raises(LLMError, match="Serve application 'no-such-app' is not available"):
        chat(Endpoint(endpoint_url("no-such-app"), "m", transport=TRANSPORT), max_retries=0)


def test_runs_use_the_handle_path_unless_told_proxy():
    from matrix_core import ServiceHandle
    from matrix_core._private.serve_transport import client_endpoints

    proxy = Endpoint("http://10.0.0.1:8123/svc/v1", "qwen")
    served = ServiceHandle([proxy], info={"serve_app": "svc"})
    assert client_endpoints(served, None) == [Endpoint("serve://svc/v1", "qwen", transport=TRANSPORT)]
    assert client_endpoints(served, {"serve_path": "proxy"}) == [proxy]
    attached = ServiceHandle([Endpoint("http://gpu1:8000/v1", "m")])  # not a Serve application
    assert client_endpoints(attached, None) == attached.endpoints
