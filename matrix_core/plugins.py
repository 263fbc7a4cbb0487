"""The plugin host: loads entry points of group ``matrix`` once, collects typed specs."""
from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any, Iterable

import pluggy

from . import hookspecs
from .errors import ConfigError
from .specs import SPEC_KINDS

log = logging.getLogger("matrix.plugins")

ENTRY_POINT_GROUP = "matrix"
CORE_DISTRIBUTION = "matrix-core"
# Built-ins register through the same hooks as third-party plugins.
DEFAULT_PLUGINS = (("core", "matrix_core._private.builtins"),)


@dataclass(frozen=True)
class Registered:
    spec: Any
    plugin: str
    package: str


class PluginHost:
    """Owns a pluggy manager and the specs its plugins registered.

    ``load``/``block`` select plugins by entry-point name (``MATRIX_LOAD_PLUGINS=a,b`` and
    ``-p no:NAME`` / ``MATRIX_DISABLE_PLUGINS``). Built-in defaults cannot be deselected
    except by ``block``.
    """

    def __init__(self, load: Iterable[str] | None = None, block: Iterable[str] = ()):
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        self._load = None if load is None else {n for n in load if n}
        self._block = {n for n in block if n}
        self._packages: dict[str, str] = {}
        self._broken: dict[str, str] = {}
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
        """Register a plugin object (module or instance); resets the collected specs."""
        if name in self._block:
            return
        self.pm.register(plugin, name=name)
        self._packages[name] = package
        self._registry = None

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self._packages.pop(name, None)
        self._registry = None

    def ensure_loaded(self) -> "PluginHost":
        if self._loaded:
            return self
        self._loaded = True
        for name, module_name in DEFAULT_PLUGINS:
            self.register(importlib.import_module(module_name), name, CORE_DISTRIBUTION)
        found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
        if self._load is not None:
            unknown = sorted(self._load - set(found))
            if unknown:
                raise ConfigError(
                    f"MATRIX_LOAD_PLUGINS names unknown plugin(s) {', '.join(unknown)}; "
                    f"installed: {', '.join(sorted(found)) or 'none'}"
                )
        for name, ep in sorted(found.items()):
            if (self._load is not None and name not in self._load) or name in self._block:
                continue
            try:
                module = ep.load()
            except Exception as exc:  # a broken plugin must not take the others down
                self._broken[name] = f"{type(exc).__name__}: {exc}"
                log.warning("plugin %r (%s) failed to load and is skipped: %s", name, ep.value, exc)
                continue
            self.register(module, name, ep.dist.name if ep.dist else name)
        return self

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
        for kind, spec_type in SPEC_KINDS.items():
            hook = getattr(self.pm.hook, f"register_{kind}s")
            for impl in hook.get_hookimpls():
                plugin = impl.plugin_name

                def register(spec: Any, _plugin: str = plugin, _kind: str = kind) -> None:
                    if not isinstance(spec, spec_type):
                        raise ConfigError(
                            f"plugin {_plugin!r} registered {type(spec).__name__} "
                            f"from register_{_kind}s; expected {spec_type.__name__}"
                        )
                    previous = collected[_kind].get(spec.name)
                    if previous is not None:
                        raise ConfigError(
                            f"{_kind} {spec.name!r} is registered twice: by "
                            f"{previous.package} (plugin {previous.plugin!r}) and by "
                            f"{self._packages[_plugin]} (plugin {_plugin!r})"
                        )
                    collected[_kind][spec.name] = Registered(spec, _plugin, self._packages[_plugin])

                # Call each implementation alone so duplicates can name the plugin.
                impl.function(**{a: register for a in impl.argnames})
        return collected

    def get(self, kind: str, name: str) -> Any:
        entries = self.registry(kind)
        if name not in entries:
            label = kind.replace("_", " ")
            raise ConfigError(
                f"unknown {label} {name!r}; installed: {', '.join(sorted(entries)) or 'none'}"
            )
        return entries[name].spec

    def describe(self) -> list[dict[str, Any]]:
        """One entry per plugin: its package and what it registered, for ``matrix plugins``."""
        self.ensure_loaded()
        out: dict[str, dict[str, Any]] = {
            name: {"name": name, "package": pkg, "registers": {}} for name, pkg in self._packages.items()
        }
        for kind in SPEC_KINDS:
            for spec_name, entry in self.registry(kind).items():
                out[entry.plugin]["registers"].setdefault(kind, []).append(spec_name)
        for name, why in self._broken.items():
            out[name] = {"name": name, "package": "?", "registers": {}, "error": why}
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
