"""LiteLLM as Matrix's LLM backend (``llm=litellm``): one client library for OpenAI, Azure
OpenAI, Gemini and any OpenAI-compatible server, called inside each agent host.

``start`` checks the model and the credentials (in the driver, then in a Ray worker) before
any task starts, and returns a ``litellm://`` endpoint that :mod:`.transport` answers.
"""
from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Any, Mapping

from matrix_core import ConfigDirSpec, ConfigError, Endpoint, LLMBackendSpec, MatrixError, ServiceHandle, hookimpl
from matrix_core.specs import backend_defaults

from . import credentials

log = logging.getLogger("matrix.litellm")

CONF_DIR = Path(__file__).parent / "conf"
TRANSPORT = "matrix_plugin_litellm.transport:make_transport"
# The variable each provider's key is read from when llm.api_key_env is not set.
PROVIDER_KEY_ENV = {"openai": "OPENAI_API_KEY", "azure": "AZURE_API_KEY", "gemini": "GEMINI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


def defaults() -> dict[str, Any]:
    cfg = backend_defaults(CONF_DIR, "litellm")
    cfg["model"] = None  # ??? in the yaml: required
    return cfg


def start_litellm(cfg: Mapping[str, Any]) -> ServiceHandle:
    s = {**defaults(), **{k: v for k, v in cfg.items() if k != "client"}}
    model = s["model"]
    if not model:
        raise ConfigError("llm.model is not set: give LiteLLM's provider/model, e.g. llm.model=openai/gpt-4o-mini")
    model = str(model)
    secrets = _secrets_file(s["secrets_file"])
    provider = _provider(model, s["api_base"])
    where = f"the environment or {secrets}" if secrets else "the environment"
    api_base, api_version = s["api_base"], s["api_version"]
    if provider == "azure":
        api_base = api_base or credentials.lookup("AZURE_API_BASE", secrets)
        api_version = api_version or credentials.lookup("AZURE_API_VERSION", secrets)
        if not (api_base and api_version):
            raise ConfigError(f"llm=litellm ({model}): Azure needs llm.api_base (or AZURE_API_BASE) and llm.api_version (or AZURE_API_VERSION) in {where}")
    key_env = s["api_key_env"] or PROVIDER_KEY_ENV.get(provider)
    if key_env:
        if credentials.lookup(key_env, secrets) is None:
            raise ConfigError(f"llm=litellm ({model}): {key_env} is not set in {where}; set it, or name another variable with llm.api_key_env")
        _check_workers(key_env, secrets)
    else:  # a provider with its own credential chain (bedrock, vertex, ollama, ...): litellm knows what it needs
        missing = _litellm().validate_environment(model=model, api_base=api_base).get("missing_keys") or []
        if missing:
            raise ConfigError(f"llm=litellm ({model}): set {', '.join(missing)} in the environment, or name the key's variable with llm.api_key_env")
    settings = {"key_env": key_env, "secrets_file": secrets, "api_base": api_base, "api_version": api_version}
    endpoint = Endpoint(base_url=f"litellm://{provider}/v1", model=model, api_key=credentials.encode(settings), transport=TRANSPORT)
    return ServiceHandle([endpoint], info={"provider": provider, "model": model, "api_base": api_base, "key_env": key_env})


def _litellm():
    from .transport import import_litellm

    return import_litellm()


def _provider(model: str, api_base: str | None) -> str:
    try:
        return _litellm().get_llm_provider(model=model, api_base=api_base)[1]
    except Exception:  # litellm raises BadRequestError with a multi-line provider list
        raise ConfigError(f"llm.model={model!r}: LiteLLM cannot tell the provider; write provider/model, e.g. openai/gpt-4o-mini or azure/<deployment>") from None


def _secrets_file(path: str | None) -> str | None:
    if not path:
        return None
    full = str(Path(str(path)).expanduser().resolve())  # the workers resolve it too, from another cwd
    try:
        mode = os.stat(full).st_mode
        credentials.read_secrets(full)
    except OSError as exc:
        raise ConfigError(f"llm.secrets_file: {full} cannot be read ({exc.strerror})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s can be read by other users: chmod 600 it", full)
    return full


def _check_workers(key_env: str, secrets: str | None) -> None:
    """The agent hosts resolve the key themselves: find out now, not on the first task."""
    import ray

    if not ray.is_initialized():
        return
    problem = ray.get(ray.remote(num_cpus=0)(credentials.present).remote(key_env, secrets), timeout=120)
    if problem:
        hint = "list it in llm.secrets_file on a path every node can read" if not secrets else "make the file readable on every node"
        raise MatrixError(
            f"llm=litellm: {problem} in the Ray workers (the driver has it): Ray was started before it was set, "
            f"or the cluster's nodes lack it; restart Ray with it set, set it on every node, or {hint}"
        )


@hookimpl
def register_llm_backends(register):
    register(LLMBackendSpec("litellm", start_litellm, "any LiteLLM provider (OpenAI, Azure, Gemini, OpenAI-compatible URLs)"))


@hookimpl
def register_config_dirs(register):
    register(ConfigDirSpec("litellm", CONF_DIR, "llm/litellm"))
