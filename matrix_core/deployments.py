"""LLM backends as Ray Serve deployments: the contract between the core and engine plugins.

**A backend offers a deployment** by setting ``LLMBackendSpec.serve_app``::

    serve_app(cfg: Mapping[str, Any], options: DeploymentOptions) -> ray.serve.Application

- ``cfg`` is the backend's ``llm`` section as a plain dict: its yaml defaults plus the
  overrides, without ``client`` and ``deployment``.
- ``options`` is the validated ``llm.deployment`` section; ``options.name`` is the Serve
  application's name (the service name, or one per run and resource).
- Apply ``options`` with :func:`serve_options` (``serve.deployment(...).options(**serve_options(o, ...))``)
  or, for ``ray.serve.llm``, :func:`autoscaling_config` / :func:`ray_actor_options` in
  ``LLMConfig.deployment_config``, so replicas, autoscaling, resources and health checks
  mean the same for every engine. What one replica reserves must be what
  ``options.replica_demand()`` says: the core checks the cluster against it before deploying.
- The application's ingress speaks the OpenAI API under its route prefix:
  ``GET {prefix}/v1/models`` lists the served model, ``POST {prefix}/v1/chat/completions``
  answers.
- A replica fails ``check_health()`` when its engine is down. A replica whose engine cannot
  start raises from its constructor with the engine's last log lines in the message (Serve
  reports it in ``serve.status()``; the core shows it in one line).
- ``serve_app`` only builds: it never calls ``serve.run``. Building must not need the engine
  installed where the command runs (import it inside the replica).

**The core deploys it** (``matrix_core._private.serving.deploy``): it checks the cluster's
resources, starts Serve if it is not running (one HTTP proxy on the head node, on a free
port), ``serve.run(app, name=NAME, route_prefix="/NAME", blocking=False)``, waits until the
application is RUNNING (or reports why not) and asks ``/NAME/v1/models`` through the proxy.

**A client reaches a deployment** through:

- HTTP, the default: ``Endpoint(base_url=f"{proxy}/{NAME}/v1", model)``, the proxy being
  Serve's HTTP proxy (``http://HEAD_IP:PORT``, see :func:`route_prefix`). The returned
  ``ServiceHandle.info`` holds ``serve_app`` (NAME), ``route_prefix``, ``proxy`` and
  ``owned`` (True when this run deployed it and removes it at its end).
- A ``DeploymentHandle``: ``serve.get_app_handle(NAME)``. The ingress deployments of our own
  (llamacpp, simllm) expose ``async call(method, path, body) -> (status, json_body)`` with
  ``path`` as on HTTP (``"/v1/chat/completions"``), which an ``Endpoint.transport`` can map an
  httpx request onto; and ``engine_url()``: the URL of the engine's own HTTP server inside the
  answering replica (the direct path, bypassing Serve).
"""
from __future__ import annotations

from typing import Any

from .options import DeploymentOptions

__all__ = ["DeploymentOptions", "OpenAIIngress", "autoscaling_config", "ray_actor_options", "route_prefix",
           "serve_options", "stderr_tail"]


def route_prefix(name: str) -> str:
    """The HTTP route prefix of application ``name`` on Serve's proxy."""
    return "/" + name


def autoscaling_config(options: DeploymentOptions) -> dict[str, Any]:
    """Ray Serve ``AutoscalingConfig`` fields from ``options``."""
    config: dict[str, Any] = {
        "min_replicas": options.min_replicas,
        "max_replicas": options.max_replicas,
        "target_ongoing_requests": options.target_ongoing_requests,
        "upscale_delay_s": options.upscale_delay_s,
        "downscale_delay_s": options.downscale_delay_s,
    }
    if options.initial_replicas is not None:
        config["initial_replicas"] = options.initial_replicas
    return {**config, **options.autoscaling}


def ray_actor_options(options: DeploymentOptions) -> dict[str, Any]:
    """``ray_actor_options`` of one replica: what it reserves."""
    actor: dict[str, Any] = {"num_cpus": options.num_cpus, "num_gpus": options.num_gpus}
    if options.resources:
        actor["resources"] = dict(options.resources)
    return actor


def serve_options(options: DeploymentOptions, *, max_ongoing_requests: int) -> dict[str, Any]:
    """Keyword arguments for ``Deployment.options``; ``max_ongoing_requests`` is the backend's
    default for what one replica takes at once (its engine's parallel slots, say)."""
    return {
        # A replica whose engine cannot start fails the deployment after two tries, with its log.
        "max_constructor_retry_count": 2,
        "autoscaling_config": autoscaling_config(options),
        "ray_actor_options": ray_actor_options(options),
        "max_ongoing_requests": options.max_ongoing_requests or max_ongoing_requests,
        "health_check_period_s": options.health_check_period_s,
        "health_check_timeout_s": options.health_check_timeout_s,
    }


def stderr_tail(lines: int = 8) -> str:
    """The last lines this process wrote to its stderr, in one line (inside a replica: Ray
    sends a worker's stderr to a log file, where an in-process engine logs why it failed)."""
    import os

    try:
        path = os.readlink("/proc/self/fd/2")
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 16384))
            text = f.read().decode(errors="replace")
    except OSError:
        return "(no engine log)"
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(kept[-lines:]) or "(the engine logged nothing)"


class OpenAIIngress:
    """Base of a replica class that serves the OpenAI API through Serve's HTTP proxy.

    A subclass implements ``async call(method, path, body)`` returning ``(status, json_body)``
    or ``(status, json_body, headers)``; ``path`` is as on HTTP without the route prefix
    (``"/v1/chat/completions"``). The same method answers ``DeploymentHandle`` calls.
    """

    async def call(self, method: str, path: str, body: Any) -> tuple:
        raise NotImplementedError

    async def __call__(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        path = request.url.path
        root = request.scope.get("root_path") or ""
        if root and path.startswith(root):
            path = path[len(root):] or "/"
        body = None
        if request.method == "POST":
            try:
                body = await request.json()
            except ValueError:
                return JSONResponse({"error": {"message": "the request body is not JSON", "type": "invalid_request_error", "code": 400}}, status_code=400)
        status, payload, *headers = await self.call(request.method, path, body)
        return JSONResponse(payload, status_code=status, headers=headers[0] if headers else None)
