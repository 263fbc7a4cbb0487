"""Hydra composition over the config directories that plugins register."""
from __future__ import annotations

import importlib.resources
from typing import Any, Mapping, Sequence

from hydra.core.plugins import Plugins
from hydra.plugins.search_path_plugin import SearchPathPlugin
from omegaconf import OmegaConf

from .errors import ConfigError
from .plugins import get_plugin_host

CONFIG_MODULE = "matrix_core.conf"


class MatrixSearchPath(SearchPathPlugin):
    """Adds every registered :class:`ConfigDirSpec` to Hydra's search path."""

    def manipulate_search_path(self, search_path) -> None:
        for name, entry in sorted(get_plugin_host().registry("config_dir").items()):
            search_path.append(f"matrix:{name}", f"file://{entry.spec.path}")


def _package_file(spec: str) -> str:
    """``${pkg:matrix_plugin_x/data/file.jsonl}``: a file shipped inside an installed package."""
    package, _, relative = spec.partition("/")
    try:
        return str(importlib.resources.files(package).joinpath(relative))
    except ModuleNotFoundError:
        raise ConfigError(f"${{pkg:{spec}}}: package {package!r} is not installed") from None


Plugins.instance().register(MatrixSearchPath)
if not OmegaConf.has_resolver("pkg"):
    OmegaConf.register_new_resolver("pkg", _package_file)

WORKFLOW_NODE_PREFIX = "matrix_workflow_"  # stored at the root, so a node's defaults list reads like a yaml's


def register_nodes() -> None:
    """Stores the typed defaults (``matrix_options``) and each workflow's own ``defaults``
    in Hydra's ConfigStore, so the defaults are written once, in the models."""
    from hydra.core.config_store import ConfigStore

    from .options import base_node

    store = ConfigStore.instance()
    store.store(name="matrix_options", node=base_node())
    for name, entry in get_plugin_host().registry("workflow").items():
        if entry.spec.defaults is not None:
            store.store(name=WORKFLOW_NODE_PREFIX + name, node=workflow_node(name, entry.spec.defaults))


def workflow_node(name: str, defaults: Mapping[str, Any]) -> dict[str, Any]:
    node = dict(defaults)
    listed = list(node.get("defaults") or [])
    if "matrix_base" not in listed:
        listed.insert(0, "matrix_base")
    if "_self_" not in listed:
        listed.append("_self_")
    node["defaults"] = listed
    node.setdefault("workflow", name)
    return node


def config_name(spec) -> str:
    """The config ``matrix run`` composes for a workflow spec."""
    if spec.config_name is None and spec.defaults is not None:
        return WORKFLOW_NODE_PREFIX + spec.name
    return spec.config_name or spec.name


def compose(workflow: str, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Compose a workflow's config as ``matrix run`` would, resolved to a plain dict."""
    from hydra import compose as hydra_compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    spec = get_plugin_host().get("workflow", workflow)
    register_nodes()
    try:
        with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
            cfg = hydra_compose(config_name(spec), overrides=list(overrides))
    except (HydraException, OmegaConfBaseException, ValueError) as exc:  # ValueError: override syntax such as '=5'
        raise ConfigError(f"workflow {workflow!r}: {one_line(exc)}") from None
    return to_plain(cfg)


def to_plain(cfg: Any) -> dict[str, Any]:
    try:
        plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except Exception as exc:  # omegaconf raises several types for unresolved values
        raise ConfigError(f"config: {one_line(exc)}") from None
    plain.pop("hydra", None)
    return plain  # type: ignore[return-value]


def one_line(exc: BaseException) -> str:
    """Hydra/OmegaConf messages span lines and end with search-path dumps: keep the gist."""
    text = str(exc).split("Config search path:")[0]
    override = getattr(exc, "override", None)  # a syntax error: say which override
    if override and str(override) not in text:
        text = f"cannot parse override {override!r}: {text}"
    text = text.split("\n    full_key:")[0]
    return " ".join(text.split())
