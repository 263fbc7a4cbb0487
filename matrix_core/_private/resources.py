"""Named LLM resources: several models in one run, chosen per role.

A run declares resources under ``llms.NAME`` (any registered backend, with its own ``client``
settings) or as an alias (``llms.NAME: OTHER``); the ``llm`` section is the resource named
``default``. A role calls the resource named by ``agents.<role>.llm`` (``default`` if unset)
as ``self.llm``, and any name listed in ``agents.<role>.llms`` as ``self.llms[NAME]``.

Everything here is checked before anything starts; each used resource is started once,
shared by every role naming it, and stopped with the run. Agent hosts count every call per
(resource, role, model); the driver folds the counts into the run summary.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..errors import ConfigError, MatrixError
from ..llm import LLMClient, LLMResult, client_from_config
from ..specs import Endpoint, LLMBackendSpec, ServiceHandle

log = logging.getLogger("matrix.resources")

DEFAULT = "default"
ROLE_KEYS = ("llm", "llms")  # role-section keys this module owns (not agent options)


@dataclass
class LLMBinding:
    """A started resource as agent hosts see it (picklable)."""

    name: str
    backend: str
    endpoints: list[Endpoint]
    client: dict[str, Any]
    model: str | None = None


@dataclass
class LLMResources:
    """The run's resources and which roles call which (the part of the run plan hosts need)."""

    aliases: dict[str, str]                  # every declared name (and "default") -> canonical resource
    configs: dict[str, dict[str, Any]]       # canonical resource -> its config section
    role_llm: dict[str, str]                 # role -> the name it calls as self.llm
    role_extra: dict[str, list[str]]         # role -> other names it reaches as self.llms[NAME]
    bindings: dict[str, LLMBinding] = field(default_factory=dict)  # filled once started

    @property
    def used(self) -> list[str]:
        """Canonical resources some role calls, the default first."""
        names = {self.aliases[n] for n in self.role_llm.values()}
        names.update(self.aliases[n] for extra in self.role_extra.values() for n in extra)
        return sorted(names, key=lambda n: (n != DEFAULT, n))

    def roles_of(self, resource: str) -> list[str]:
        calls = {r: [n, *self.role_extra.get(r, [])] for r, n in self.role_llm.items()}
        for r, names in self.role_extra.items():
            calls.setdefault(r, list(names))
        return sorted(r for r, names in calls.items() if any(self.aliases[n] == resource for n in names))


SERVICE_PREFIX = "service:"  # llms.NAME=service:SVC attaches resource NAME to service SVC


def service_section(service: str, where: str) -> dict[str, Any]:
    """The resource section of ``service:SVC``: backend ``service`` with its yaml's client defaults."""
    import yaml

    if not service:
        raise ConfigError(f"{where}=service: names no service; write {where}=service:NAME (matrix services list)")
    with open(Path(__file__).parent.parent / "conf" / "llm" / "service.yaml") as f:
        section = yaml.safe_load(f)
    return {**section, "name": service}


def _where(name: str) -> str:
    return "llm" if name == DEFAULT else f"llms.{name}"


def role_uses_llm(agent_cls: type, options: Mapping[str, Any]) -> bool:
    """``Agent.uses_llm`` is a bool, or a function of the role's options (an LLM only in some modes)."""
    uses = getattr(agent_cls, "uses_llm", False)
    return bool(uses(options)) if callable(uses) else bool(uses)


def plan_resources(cfg: Mapping[str, Any], host, roles: Mapping[str, Any]) -> LLMResources:
    """Check resources and role bindings (before anything starts); one line per mistake.

    ``roles`` maps role name -> RoleSpec (``agent_cls`` and ``options`` are read).
    """
    configs, aliases, listing = _declared(cfg, host)
    role_llm, role_extra = _bind_roles(cfg, roles, aliases, listing)
    resources = LLMResources(aliases, configs, role_llm, role_extra)
    _check_ports(resources)
    return resources


def _declared(cfg: Mapping[str, Any], host) -> tuple[dict[str, dict[str, Any]], dict[str, str], str]:
    """The run's resources (``llm`` and ``llms.NAME``) and aliases, each resolved to a defined one."""
    declared = cfg.get("llms") or {}
    if not isinstance(declared, Mapping):
        raise ConfigError(f"llms must map resource names to backend sections, got {type(declared).__name__}")
    if DEFAULT in declared:
        raise ConfigError(f"llms.{DEFAULT}: the name is reserved for the run's `llm` section; pick another name")
    configs: dict[str, dict[str, Any]] = {}
    llm = dict(cfg.get("llm") or {})
    if llm.get("backend"):
        configs[DEFAULT] = llm
    alias_of: dict[str, str] = {}
    for name, section in declared.items():
        if isinstance(section, str) and section.startswith(SERVICE_PREFIX):
            configs[str(name)] = service_section(section[len(SERVICE_PREFIX):], f"llms.{name}")
        elif isinstance(section, str):
            alias_of[str(name)] = section
        elif isinstance(section, Mapping) and section.get("backend"):
            configs[str(name)] = dict(section)
        else:
            raise ConfigError(
                f"llms.{name} needs a backend: add one with +llm@llms.{name}=BACKEND (or llms.{name}.backend=...), "
                f"or name another resource (llms.{name}=default)"
            )
    defined = sorted([*configs, *alias_of], key=lambda n: (n != DEFAULT, n))
    listing = ", ".join(defined) or "none (set llm=BACKEND or +llm@llms.NAME=BACKEND)"
    aliases = {n: n for n in configs}
    for name in alias_of:
        seen, target = [name], alias_of[name]
        while target in alias_of:
            if target in seen:
                raise ConfigError(f"llms.{name}: aliases go round in a circle ({' -> '.join([*seen, target])})")
            seen.append(target)
            target = alias_of[target]
        if target not in configs:
            raise ConfigError(f"llms.{name} names resource {target!r}, which is not defined; defined: {listing}")
        aliases[name] = target
    for name, section in configs.items():
        backends = host.registry("llm_backend")
        if section["backend"] not in backends:
            raise ConfigError(
                f"{_where(name)}.backend: unknown LLM backend {section['backend']!r} for resource {name!r}; "
                f"installed: {', '.join(sorted(backends))}"
            )

    return configs, aliases, listing


def _bind_roles(cfg: Mapping[str, Any], roles: Mapping[str, Any], aliases: Mapping[str, str],
                listing: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Which resource each role calls as ``self.llm`` and which others it may reach by name."""
    role_llm: dict[str, str] = {}
    role_extra: dict[str, list[str]] = {}
    agents = cfg.get("agents") or {}
    for role, spec in roles.items():
        section = agents.get(role) or {}
        chosen, extra = section.get("llm"), section.get("llms") or []
        if chosen is not None and not isinstance(chosen, str):
            raise ConfigError(
                f"agents.{role}.llm must name an LLM resource (one of: {listing}), not a section; "
                f"declare the model as a resource: +llm@llms.NAME=BACKEND llms.NAME.model=... agents.{role}.llm=NAME"
            )
        extra = [n for n in ([extra] if isinstance(extra, str) else extra) if n is not None]  # null: "${..some_option}" unset
        for key, name in [("llm", chosen), *(("llms", n) for n in extra)]:
            if name is not None and name not in aliases:
                raise ConfigError(f"agents.{role}.{key}: role {role!r} names LLM resource {name!r}, which is not defined; defined: {listing}")
        if chosen is not None or role_uses_llm(spec.agent_cls, spec.options):
            name = chosen or DEFAULT
            if name not in aliases:
                raise ConfigError(
                    f"role {role!r} calls an LLM but no llm backend is configured (set llm=NAME, "
                    f"or agents.{role}.llm=RESOURCE; defined: {listing})"
                )
            role_llm[role] = name
        if extra:
            role_extra[role] = [str(n) for n in extra]
    return role_llm, role_extra


def _check_ports(resources: LLMResources) -> None:
    """Two used resources that would start servers on one port: refuse before either starts."""
    taken: dict[int, str] = {}
    for name in resources.used:
        section = resources.configs[name]
        port = section.get("port")
        if not isinstance(port, int) or isinstance(port, bool) or port <= 0:
            continue  # no server of ours, or a free port per server
        replicas = section.get("replicas") if isinstance(section.get("replicas"), int) else 1
        for p in range(port, port + max(1, replicas)):
            if p in taken:
                other = taken[p]
                raise ConfigError(
                    f"LLM resources {other!r} ({_where(other)}) and {name!r} ({_where(name)}) would both start a server on port {p}; "
                    f"set {_where(name)}.port to another port (0 = a free one), or make one an alias of the other (llms.NAME={other})"
                )
            taken[p] = name


def start_resources(resources: LLMResources, host, run_id: str | None = None) -> dict[str, ServiceHandle]:
    """Start every used resource once (in order); on a failure stop those already started.
    A backend with a Serve deployment gets one for the run, named ``run-<run_id>-<resource>``."""
    from .serve_transport import client_endpoints
    from .serving import PER_RUN_PREFIX, start_backend

    run_id = run_id or uuid.uuid4().hex[:8]
    handles: dict[str, ServiceHandle] = {}
    try:
        for name in resources.used:
            section = resources.configs[name]
            backend: LLMBackendSpec = host.get("llm_backend", section["backend"])
            started = time.perf_counter()
            try:
                handle = start_backend(backend, section, f"{PER_RUN_PREFIX}{run_id}-{name}".replace("_", "-"), _where(name))
            except MatrixError as exc:
                # Same class (a ConfigError stays one), the resource named.
                raise type(exc)(f"LLM resource {name!r} ({_where(name)}, {section['backend']}) failed to start: {exc}") from None
            handles[name] = handle
            model = handle.endpoints[0].model if handle.endpoints else section.get("model")
            endpoints = client_endpoints(handle, section.get("client"))  # serve://NAME for a Serve deployment
            resources.bindings[name] = LLMBinding(name, section["backend"], endpoints, dict(section.get("client") or {}), model)
            if len(resources.used) > 1 or name != DEFAULT:
                log.info("LLM resource %r: %s, model %s, %d endpoint(s), for %s (%.1fs)", name, section["backend"], model,
                         len(handle.endpoints), ", ".join(resources.roles_of(name)), time.perf_counter() - started)
    except BaseException:
        stop_resources(handles)
        raise
    return handles


def stop_resources(handles: Mapping[str, ServiceHandle]) -> None:
    for name, handle in reversed(list(handles.items())):
        try:
            handle.stop()
        except Exception as exc:  # one resource failing to stop must not keep the others up
            log.warning("LLM resource %r did not stop cleanly: %s", name, exc)


# --- agent hosts ------------------------------------------------------------------------


class RoleLLM:
    """A resource's client as one role sees it: every call is counted under (resource, role, model)
    and every result names its resource, so turns record who answered."""

    def __init__(self, client: LLMClient, resource: str, role: str, model: str | None, usage: dict):
        self.client, self.resource, self.role, self.model = client, resource, role, model
        self._usage = usage

    async def chat(self, *args: Any, **kwargs: Any) -> LLMResult:
        started = time.perf_counter()
        try:
            result = await self.client.chat(*args, **kwargs)
        except BaseException:  # failed for good, or the task was cancelled mid-call
            self._count(self.model, time.perf_counter() - started, failed=True)
            raise
        result.resource = self.resource
        self._count(result.model, time.perf_counter() - started, prompt=result.usage.prompt_tokens, completion=result.usage.completion_tokens)
        return result

    def _count(self, model: str | None, latency: float, failed: bool = False, prompt: int = 0, completion: int = 0) -> None:
        row = self._usage.setdefault((self.resource, self.role, model or "?"), [0, 0, 0, 0, 0.0, 0.0])
        row[0] += 1
        row[1] += failed
        row[2] += prompt
        row[3] += completion
        row[4] += latency
        row[5] = max(row[5], latency)

    def __getattr__(self, name: str) -> Any:  # endpoints, aclose, ...: the shared client's
        return getattr(self.client, name)


class HostLLMs:
    """One client per resource the roles of one agent host need; per-role views of them."""

    def __init__(self, resources: LLMResources | None, roles: Iterable[str], cache: Any = None):
        self.resources = resources
        self.cache = cache  # one response cache shared by the host's clients (keys include the model)
        self.clients: dict[str, LLMClient] = {}
        self.usage: dict[tuple[str, str, str], list] = {}
        if resources is None:
            return
        for role in set(roles):
            for name in self._names(role):
                canonical = resources.aliases[name]
                if canonical not in self.clients:
                    b = resources.bindings[canonical]
                    self.clients[canonical] = client_from_config(b.endpoints, b.client, cache=cache, resource=canonical)

    def _names(self, role: str) -> list[str]:
        r = self.resources
        return ([r.role_llm[role]] if role in r.role_llm else []) + r.role_extra.get(role, [])

    def for_role(self, role: str) -> tuple[RoleLLM | None, dict[str, RoleLLM]]:
        """The role's own resource (``self.llm``) and every name it may reach (``self.llms``)."""
        if self.resources is None:
            return None, {}
        views = {}
        for name in self._names(role):
            canonical = self.resources.aliases[name]
            views[name] = RoleLLM(self.clients[canonical], canonical, role, self.resources.bindings[canonical].model, self.usage)
        own = views.get(self.resources.role_llm[role]) if role in self.resources.role_llm else None
        return own, views

    def report(self) -> list[dict[str, Any]]:
        return [
            {"resource": res, "role": role, "model": model, "calls": c, "failed": f, "prompt_tokens": p, "completion_tokens": o,
             "latency_sum_s": ls, "latency_max_s": lm}
            for (res, role, model), (c, f, p, o, ls, lm) in self.usage.items()
        ]

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()


# --- the run summary ---------------------------------------------------------------------


_COST_MAP: dict[str, Any] | None = None


def _cost_map() -> dict[str, Any]:
    """LiteLLM's local model price map (the copy the package ships; never fetched)."""
    global _COST_MAP
    if _COST_MAP is None:
        _COST_MAP = {}
        if "litellm" in sys.modules:
            _COST_MAP = dict(getattr(sys.modules["litellm"], "model_cost", {}) or {})
        if not _COST_MAP:
            spec = importlib.util.find_spec("litellm")
            if spec is not None and spec.origin:
                path = Path(spec.origin).parent / "model_prices_and_context_window_backup.json"
                if path.exists():
                    _COST_MAP = json.loads(path.read_text())
    return _COST_MAP


def price(model: str) -> tuple[float, float] | None:
    """USD per prompt and per completion token, where LiteLLM's cost map knows the model."""
    prices = _cost_map()
    for key in (model, model.split("/", 1)[-1]):
        entry = prices.get(key)
        if isinstance(entry, Mapping) and entry.get("input_cost_per_token") is not None:
            return float(entry["input_cost_per_token"]), float(entry.get("output_cost_per_token") or 0.0)
    return None


def summarize(rows: Iterable[Mapping[str, Any]], resources: LLMResources | None) -> dict[str, Any]:
    """Fold the hosts' (resource, role, model) counts into per-resource and per-role totals."""
    out: dict[str, Any] = {"resources": {}, "roles": {}}
    if resources is None:
        return out
    for name in resources.used:
        b = resources.bindings.get(name)
        out["resources"][name] = {"backend": resources.configs[name]["backend"], "model": b.model if b else None,
                                  "roles": resources.roles_of(name), **_zero()}
    for role, name in resources.role_llm.items():
        out["roles"][role] = {"resources": [resources.aliases[name]], **_zero()}
    for row in rows:
        cost = price(row["model"])
        for key, group, extra in (("resources", row["resource"], {}), ("roles", row["role"], {"resources": []})):
            agg = out[key].setdefault(group, {**extra, **_zero()})
            if key == "roles" and row["resource"] not in agg["resources"]:
                agg["resources"].append(row["resource"])
            agg["calls"] += row["calls"]
            agg["failed"] += row["failed"]
            agg["prompt_tokens"] += row["prompt_tokens"]
            agg["completion_tokens"] += row["completion_tokens"]
            agg["latency_sum_s"] += row["latency_sum_s"]
            agg["latency_max_s"] = max(agg["latency_max_s"], row["latency_max_s"])
            if row["model"] not in agg["models"]:
                agg["models"].append(row["model"])
            if cost is None:
                if row["calls"] > row["failed"]:
                    agg["unpriced"].append(row["model"])
            else:
                agg["cost_usd"] += cost[0] * row["prompt_tokens"] + cost[1] * row["completion_tokens"]
    for group in (*out["resources"].values(), *out["roles"].values()):
        group["tokens"] = group["prompt_tokens"] + group["completion_tokens"]
        group["latency_mean_s"] = group.pop("latency_sum_s") / group["calls"] if group["calls"] else 0.0
        unpriced = sorted(set(group.pop("unpriced")))
        group["cost_usd"] = None if unpriced or not group["calls"] else group["cost_usd"]
    return out


def _zero() -> dict[str, Any]:
    return {"calls": 0, "failed": 0, "prompt_tokens": 0, "completion_tokens": 0, "latency_sum_s": 0.0, "latency_max_s": 0.0,
            "models": [], "unpriced": [], "cost_usd": 0.0}


def summary_lines(llm: Mapping[str, Any]) -> str:
    """The run summary's LLM part: one line per resource, then one per role."""
    def line(label: str, g: Mapping[str, Any]) -> str:
        money = f", ${g['cost_usd']:.6f}" if g.get("cost_usd") is not None else ", cost n/a"
        return (f"\n  {label}: {g['calls']} calls, {g['failed']} failed, {g['tokens']} tokens "
                f"({g['prompt_tokens']} prompt + {g['completion_tokens']} completion), "
                f"latency mean {g['latency_mean_s']:.3f}s max {g['latency_max_s']:.3f}s{money}")

    text = ""
    for name, g in (llm.get("resources") or {}).items():
        text += line(f"llm {name} [{g['backend']} {', '.join(g['models']) or g['model']}]", g)
    for role, g in (llm.get("roles") or {}).items():
        text += line(f"role {role} -> {', '.join(g['resources'])}", g)
    return text
