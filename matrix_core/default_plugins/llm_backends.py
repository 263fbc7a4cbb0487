"""LLM backends that need no extra package: the in-process fake, URLs, shared services."""

from __future__ import annotations

from .._private import services
from ..hookspecs import hookimpl
from ..specs import LLMBackendSpec


@hookimpl
def register_llm_backends(register):
    register(LLMBackendSpec("fake", services.start_fake, "in-process echo LLM for tests and dry runs"))
    register(LLMBackendSpec("endpoint", services.start_endpoint, "attach to running OpenAI-compatible servers by URL"))
    register(
        LLMBackendSpec("service", services.start_service, "attach to a service from `matrix services start` (llm.name)")
    )
