"""The Ray Serve replica that hosts llama.cpp's server in-process (via xllamacpp).

Kept in its own module so Serve pickles the class by reference and a worker imports it
without the plugin's hook module (and without importing xllamacpp in the driver).
"""
from __future__ import annotations

import time
from typing import Any, Mapping

from matrix_core.deployments import OpenAIIngress, stderr_tail

# Headers worth passing back to the client (its retries read Retry-After).
_PASSED_HEADERS = ("retry-after",)


def _params(settings: Mapping[str, Any]):
    import xllamacpp

    p = xllamacpp.CommonParams()
    p.model.path = settings["model_path"]
    p.model_alias = {settings["alias"]}
    p.hostnames = [settings["host"]]  # loopback: reached by this replica (and direct-path measurements on its node)
    p.port = int(settings["port"])  # 0: a free port, as several replicas may share a node
    p.n_parallel = int(settings["n_parallel"])
    p.n_ctx = int(settings["ctx_size"])  # split evenly across the slots (kv_unified is off)
    p.cpuparams.n_threads = p.cpuparams_batch.n_threads = int(settings["threads"])
    p.cont_batching = True
    p.cache_ram_mib = int(settings["cache_ram_mib"])  # llama.cpp's default (8 GiB) is most of a small box
    p.endpoint_metrics = True
    p.ui = False
    p.warmup = False  # saves seconds at start; the first request pays a few ms instead
    p.verbosity = int(settings["verbosity"])
    if settings.get("chat_template"):
        p.chat_template = settings["chat_template"]  # replaces the GGUF's (jinja is on by default)
    return p


class LlamaCppReplica(OpenAIIngress):
    """One ``xllamacpp.Server`` per replica; requests are forwarded to it on loopback.
    The replica's process ending (Serve removing it) ends the server."""

    def __init__(self, settings: Mapping[str, Any]):
        import httpx
        import xllamacpp

        from . import resolve_model

        path, alias = resolve_model(settings.get("model_path"))  # here too: the replica may run on another node
        settings = {**settings, "model_path": str(path), "alias": alias}
        try:
            self._server = xllamacpp.Server(_params(settings))  # returns once the model is loaded and the socket listens
        except RuntimeError as exc:
            raise RuntimeError(f"llama.cpp did not start ({exc}; model {path}); engine log: {stderr_tail()}") from None
        address = self._server.listening_address
        self.url = address if "://" in address else f"http://{address}"
        self.model = alias
        deadline = time.monotonic() + float(settings["startup_timeout_s"])
        with httpx.Client(timeout=5, trust_env=False) as http:
            while True:
                try:
                    if http.get(self.url + "/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"llama.cpp on {self.url} was not healthy within {settings['startup_timeout_s']}s; engine log: {stderr_tail()}")
                time.sleep(0.2)
        self._http = None  # made on first use, on the event loop that serves requests

    def _client(self):
        import httpx

        if self._http is None:
            self._http = httpx.AsyncClient(base_url=self.url, timeout=None, trust_env=False,
                                           limits=httpx.Limits(max_connections=None, max_keepalive_connections=64))
        return self._http

    async def call(self, method: str, path: str, body: Any) -> tuple:
        if body is not None and body.get("stream"):
            return 400, {"error": {"message": "streaming is not supported through this deployment; send stream=false", "type": "invalid_request_error", "code": 400}}, {}
        response = await self._client().request(method, path, json=body)
        headers = {k: v for k, v in response.headers.items() if k.lower() in _PASSED_HEADERS}
        try:
            payload = response.json()
        except ValueError:
            payload = {"error": {"message": response.text[:500], "type": "server_error", "code": response.status_code}}
        return response.status_code, payload, headers

    async def check_health(self) -> None:
        import httpx

        try:
            status = (await self._client().get("/health", timeout=10)).status_code
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        if status != 200:
            raise RuntimeError(f"llama.cpp on {self.url} answers /health with {status}; engine log: {stderr_tail()}")

    def engine_url(self) -> str:
        return self.url + "/v1"
