"""Credentials, resolved by name in whichever process makes the LLM calls.

The endpoint that travels to the agent hosts carries *where* the key is (an environment
variable's name, a secrets file's path) and the non-secret call settings, never the key.
They ride in ``Endpoint.api_key``, the one per-endpoint field the client hands to an
in-process transport (as ``Authorization: Bearer litellm:...``; it never reaches a network).
Nothing here imports litellm: Ray's pre-flight check runs this module alone.
"""
from __future__ import annotations

import base64
import functools
import json
import os
from typing import Any, Mapping

PREFIX = "litellm:"


def encode(settings: Mapping[str, Any]) -> str:
    return PREFIX + base64.urlsafe_b64encode(json.dumps(dict(settings), sort_keys=True).encode()).decode()


def decode(authorization: str | None) -> dict[str, Any]:
    token = (authorization or "").removeprefix("Bearer ").strip()
    if not token.startswith(PREFIX):
        raise ValueError("no litellm call settings on this request: build the endpoint with llm=litellm")
    return json.loads(base64.urlsafe_b64decode(token[len(PREFIX):]))


def read_secrets(path: str) -> dict[str, str]:
    """A .env file (python-dotenv's grammar: comments, ``export``, quotes); cached per version."""
    st = os.stat(path)
    return _parse(path, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=8)
def _parse(path: str, mtime_ns: int, size: int) -> dict[str, str]:
    from dotenv import dotenv_values

    return {name: value for name, value in dotenv_values(path).items() if value is not None}


def lookup(name: str, secrets_file: str | None = None) -> str | None:
    """The value of ``name``: the secrets file's if it has one, else the environment's."""
    if secrets_file:
        value = read_secrets(secrets_file).get(name)
        if value:
            return value
    return os.environ.get(name) or None


def present(name: str, secrets_file: str | None) -> str | None:
    """Why ``name`` cannot be resolved in this process, or None when it can (says nothing of the value)."""
    try:
        return None if lookup(name, secrets_file) else f"{name} is not set"
    except OSError as exc:
        return f"{secrets_file} cannot be read ({exc.strerror})"
