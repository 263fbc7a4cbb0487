"""The plugin host: loads entry points of group ``matrix`` once, collects typed specs.

pluggy does the bookkeeping: hooks are validated against :mod:`matrix_core.hookspecs`
(``check_pending``: a misspelled hook is an error naming the plugin), disabled plugins are
blocked (``set_blocked``), and implementations run in pluggy's call order (``tryfirst`` /
``trylast`` honoured). ``MATRIX_TRACE_PLUGINS=1`` prints one JSON line per hook call to
stderr. A plugin that fails to load, targets another core version, or raises in a hook is
reported and skipped; the others keep working.
"""

from __future__ import annotations

import difflib
import importlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, entry_points, version
from types import ModuleType
from typing import Any, Iterable

import pluggy

from . import hookspecs
from .default_plugins import DEFAULT_PLUGINS
from .errors import ConfigError
from .specs import SPEC_KINDS

log = logging.getLogger("matrix.plugins")

ENTRY_POINT_GROUP = "matrix"
CORE_DISTRIBUTION = "matrix-core"
TRACE_ENV = "MATRIX_TRACE_PLUGINS"


@dataclass(frozen=True)
class Registered:
    spec: Any
    plugin: str
    package: str


def core_version() -> str | None:
    try:
        return version(CORE_DISTRIBUTION)
    except PackageNotFoundError:  # running from a source tree that is not installed
        return None


def incompatible_core(dist: Any, core: str | None) -> str | None:
    """Why ``dist`` cannot run on core version ``core`` (its ``matrix-core`` range), or None."""
    from packaging.requirements import InvalidRequirement, Requirement

    if dist is None or core is None:
        return None
    for line in dist.requires or ():
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.name.lower().replace("_", "-") != CORE_DISTRIBUTION or req.marker is not None:
            continue
        if req.specifier and not req.specifier.contains(core, prereleases=True):
            return (
                f"{dist.metadata['Name']} {dist.version} needs {CORE_DISTRIBUTION}{req.specifier}, installed is {core}"
            )
    return None


class PluginHost:
    """Owns a pluggy manager and the specs its plugins registered.

    ``load``/``block`` select plugins by entry-point name (``MATRIX_LOAD_PLUGINS=a,b`` and
    ``-p no:NAME`` / ``MATRIX_DISABLE_PLUGINS``). The built-in defaults (``core.*``) are
    always loaded unless blocked by name.
    """

    def __init__(self, load: Iterable[str] | None = None, block: Iterable[str] = (), trace: bool | None = None):
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        self._load = None if load is None else {n for n in load if n}
        for name in block:
            if name:
                self.pm.set_blocked(name)
        self._trace = bool(os.environ.get(TRACE_ENV)) if trace is None else trace
        self._packages: dict[str, str] = {}
        self._broken: dict[str, str] = {}
        self._broken_packages: dict[str, str] = {}
        self._registry: dict[str, dict[str, Registered]] | None = None
        self._loaded = False

    @classmethod
    def from_env(cls, block: Iterable[str] = ()) -> "PluginHost":
        load = os.environ.get("MATRIX_LOAD_PLUGINS")
        disabled = os.environ.get("MATRIX_DISABLE_PLUGINS", "")
        return cls(
            load=None if load is None else load.split(","),
            block=[*disabled.split(","), *block],
        )

    def register(self, plugin: ModuleType | object, name: str, package: str) -> None:
        """Register a plugin object (module or instance); resets the collected specs.

        A hook that no hookspec declares (``register_agent`` for ``register_agents``) or
        with arguments its spec lacks is a :class:`ConfigError` naming the plugin and hook.
        """
        problem = self._add(plugin, name, package)
        if problem is not None:
            raise ConfigError(f"plugin {name!r} ({package}): {problem}")

    def _add(self, plugin: ModuleType | object, name: str, package: str) -> str | None:
        """Registers ``plugin`` unless blocked; returns why pluggy refused it, or None."""
        if self.pm.is_blocked(name):
            return None
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            if self.pm.get_plugin(name) is not None:
                self.pm.unregister(name=name)
            return self._explain(exc)
        self._packages[name] = package
        self._registry = None
        return None

    @staticmethod
    def _explain(exc: pluggy.PluginValidationError) -> str:
        message = str(exc)
        if message.startswith("unknown hook "):
            hook = message.split("'")[1]
            close = difflib.get_close_matches(hook, [n for n in dir(hookspecs) if n.startswith("register_")], 1)
            return f"unknown hook {hook!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
        return message.split("\n")[0]

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self._packages.pop(name, None)
        self._registry = None

    def is_blocked(self, name: str) -> bool:
        return self.pm.is_blocked(name)

    def ensure_loaded(self) -> "PluginHost":
        if self._loaded:
            return self
        self._loaded = True
        for module in DEFAULT_PLUGINS:
            plugin = importlib.import_module(f"{__package__}.default_plugins.{module}")
            self.register(plugin, f"core.{module}", CORE_DISTRIBUTION)
        found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
        if self._load is not None:
            unknown = sorted(self._load - set(found))
            if unknown:
                raise ConfigError(
                    f"MATRIX_LOAD_PLUGINS names unknown plugin(s) {', '.join(unknown)}; "
                    f"installed: {', '.join(sorted(found)) or 'none'}"
                )
        core = core_version()
        for name, ep in sorted(found.items()):
            if (self._load is not None and name not in self._load) or self.pm.is_blocked(name):
                continue
            package = ep.dist.name if ep.dist else name
            why = incompatible_core(ep.dist, core)
            if why is None:
                try:
                    why = self._add(ep.load(), name, package)
                except Exception as exc:  # a broken plugin must not take the others down
                    why = f"{type(exc).__name__}: {exc}"
            if why is not None:
                self._skip(name, package, why)
        return self

    def _skip(self, name: str, package: str, why: str) -> None:
        self._broken[name] = why
        self._broken_packages[name] = package
        log.warning("plugin %r (%s) is skipped: %s", name, package, why)

    @property
    def broken(self) -> dict[str, str]:
        return dict(self._broken)

    def plugin_names(self) -> list[str]:
        self.ensure_loaded()
        return sorted(n for n in self._packages)

    def registry(self, kind: str) -> dict[str, Registered]:
        self.ensure_loaded()
        if self._registry is None:
            self._registry = self._collect()
        return self._registry[kind]

    def _collect(self) -> dict[str, dict[str, Registered]]:
        collected: dict[str, dict[str, Registered]] = {kind: {} for kind in SPEC_KINDS}
        failed: dict[str, str] = {}
        for kind, spec_type in SPEC_KINDS.items():
            hook_name = f"register_{kind}s"
            # pluggy calls implementations last-registered first, tryfirst/trylast aside:
            # get_hookimpls() lists them in the reverse of that order.
            for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls()):
                if impl.plugin_name in failed:
                    continue
                try:
                    specs = self._call(impl, hook_name)
                except Exception as exc:  # skip the plugin, with what it registered so far
                    failed[impl.plugin_name] = f"{hook_name} raised {type(exc).__name__}: {exc}"
                    for entries in collected.values():
                        for name in [n for n, e in entries.items() if e.plugin == impl.plugin_name]:
                            del entries[name]
                    continue
                for spec in specs:
                    self._record(collected[kind], kind, spec_type, spec, impl.plugin_name)
        for plugin, why in failed.items():
            package = self._packages[plugin]
            self.unregister(plugin)
            self._skip(plugin, package, why)
        return collected

    def _call(self, impl: Any, hook_name: str) -> list[Any]:
        """One implementation alone, so each spec is attributed to the plugin that made it."""
        specs: list[Any] = []
        start = time.perf_counter()
        impl.function(**{a: specs.append for a in impl.argnames})
        if self._trace:
            trace = {
                "hook": hook_name,
                "plugin": impl.plugin_name,
                "package": self._packages.get(impl.plugin_name),
                "registered": [getattr(s, "name", repr(s)) for s in specs],
                "duration_ms": round((time.perf_counter() - start) * 1000, 3),
            }
            print(json.dumps(trace), file=sys.stderr)
        return specs

    def _record(self, into: dict[str, Registered], kind: str, spec_type: Any, spec: Any, plugin: str) -> None:
        if not isinstance(spec, spec_type):
            raise ConfigError(
                f"plugin {plugin!r} registered {type(spec).__name__} "
                f"from register_{kind}s; expected {spec_type.__name__}"
            )
        previous = into.get(spec.name)
        if previous is not None:
            raise ConfigError(
                f"{kind} {spec.name!r} is registered twice: by "
                f"{previous.package} (plugin {previous.plugin!r}) and by "
                f"{self._packages[plugin]} (plugin {plugin!r})"
            )
        into[spec.name] = Registered(spec, plugin, self._packages[plugin])

    def get(self, kind: str, name: str) -> Any:
        entries = self.registry(kind)
        if name not in entries:
            label = kind.replace("_", " ")
            raise ConfigError(f"unknown {label} {name!r}; installed: {', '.join(sorted(entries)) or 'none'}")
        return entries[name].spec

    def describe(self) -> list[dict[str, Any]]:
        """One entry per plugin: its package and what it registered, for ``matrix plugins``."""
        self.ensure_loaded()
        for kind in SPEC_KINDS:  # first: collecting may skip a plugin whose hook raises
            self.registry(kind)
        out: dict[str, dict[str, Any]] = {
            name: {"name": name, "package": pkg, "registers": {}} for name, pkg in self._packages.items()
        }
        for kind in SPEC_KINDS:
            for spec_name, entry in self.registry(kind).items():
                out[entry.plugin]["registers"].setdefault(kind, []).append(spec_name)
        for name, why in self._broken.items():
            out[name] = {"name": name, "package": self._broken_packages[name], "registers": {}, "error": why}
        return sorted(out.values(), key=lambda e: e["name"])


_host: PluginHost | None = None


def get_plugin_host() -> PluginHost:
    """The process-wide host, loaded lazily from the environment."""
    global _host
    if _host is None:
        _host = PluginHost.from_env()
    return _host.ensure_loaded()


def set_plugin_host(host: PluginHost | None) -> PluginHost | None:
    """Replace the process-wide host (tests, ``-p no:NAME``); returns the previous one."""
    global _host
    previous, _host = _host, host
    return previous
