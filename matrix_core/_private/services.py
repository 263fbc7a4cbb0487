"""Built-in LLM backends: ``fake`` (in-process test double), ``endpoint`` (attach by URL) and
``service`` (attach to a service started with ``matrix services start``)."""
from __future__ import annotations

import logging
import os
from typing import Any, Mapping

import httpx

from ..errors import ConfigError, MatrixError
from ..llm import Endpoint, ServiceHandle
from .fake_llm import FAKE_ENDPOINT

log = logging.getLogger("matrix.services")


def start_fake(cfg: Mapping[str, Any]) -> ServiceHandle:
    return ServiceHandle(endpoints=[FAKE_ENDPOINT], info={"simulated": True})


def start_endpoint(cfg: Mapping[str, Any]) -> ServiceHandle:
    """Attach to running OpenAI-compatible servers (``llm.base_url`` may be a list)."""
    urls = cfg.get("base_url")
    if not urls:
        raise ConfigError("llm.base_url is not set: give the server's URL, e.g. llm.base_url=http://127.0.0.1:8000/v1")
    urls = [urls] if isinstance(urls, str) else list(urls)
    key = None
    if cfg.get("api_key_env"):
        key = os.environ.get(str(cfg["api_key_env"]))
        if not key:
            raise ConfigError(f"llm.api_key_env names {cfg['api_key_env']}, which is not set in the environment")
    model = cfg.get("model")
    for url in urls:
        try:
            response = httpx.get(url.rstrip("/") + "/models", timeout=5, headers={"Authorization": f"Bearer {key}"} if key else {})
        except httpx.HTTPError as exc:
            raise MatrixError(f"LLM endpoint {url} does not answer ({type(exc).__name__}); is the server running?") from None
        if response.status_code >= 400:
            raise MatrixError(f"LLM endpoint {url} answered HTTP {response.status_code} to /models")
        try:
            served = [m.get("id") for m in response.json().get("data", [])]
        except (ValueError, AttributeError, TypeError):
            raise MatrixError(f"LLM endpoint {url} is not OpenAI-compatible: /models did not answer a JSON model list") from None
        if model is None and served:
            model = served[0]
        elif model not in served and served:
            raise ConfigError(f"model {model!r} is not served at {url}; it serves: {', '.join(map(str, served))}")
    return ServiceHandle(endpoints=[Endpoint(base_url=u, model=str(model), api_key=key) for u in urls])


def attach_engine(engine: str, defaults: Mapping[str, Any], cfg: Mapping[str, Any]) -> ServiceHandle:
    """The ``start`` of an engine backend that runs deploy on Ray Serve (its ``serve_app``): it only
    attaches to servers already running at ``llm.base_url``, serving ``served_model_name`` or ``model``."""
    s = {**defaults, **cfg}
    if not s.get("base_url"):
        raise ConfigError(
            f"llm={engine} is deployed on Ray Serve (by `matrix run` or `matrix services start NAME llm={engine}`), "
            f"not started here: set llm.base_url to attach to {engine} servers that already run"
        )
    return start_endpoint({"base_url": s["base_url"], "model": s.get("served_model_name") or s.get("model"), "api_key_env": s.get("api_key_env")})


def start_service(cfg: Mapping[str, Any]) -> ServiceHandle:
    """Use service ``llm.name`` of the joined cluster (a Ray Serve deployment from ``matrix
    services start``); the service outlives the run: the handle's stop is a no-op."""
    from .services_cli import lookup, probe

    name = cfg.get("name")
    if not name:
        raise ConfigError("llm.name is not set: name a service from `matrix services list`")
    record = lookup(str(name))
    why = probe(record["base_url"])
    if why is not None:
        raise MatrixError(f"service {name!r} does not answer at {record['base_url']} ({why}); see `matrix services status {name}`")
    return ServiceHandle(endpoints=[Endpoint(base_url=record["base_url"], model=record["model"])],
                         info={"service": name, "serve_app": name, "backend": record["backend"], "reused": True, "owned": False})
