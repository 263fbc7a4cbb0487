"""The plugin host: discovery, typed registration, duplicates, selection, documentation."""
import inspect
import types

import pytest

from matrix_core import AgentSpec, ConfigError, WorkflowSpec, hookimpl, hookspecs
from matrix_core.plugins import PluginHost
from matrix_core.specs import SPEC_KINDS
from matrix_plugin_relay import RelayOrchestrator, Stamp


def fake_plugin(**hooks):
    module = types.ModuleType("fake_plugin")
    for name, fn in hooks.items():
        setattr(module, name, hookimpl(fn))
    return module


def test_installed_entry_points_are_discovered_with_their_package():
    host = PluginHost().ensure_loaded()
    sink = host.registry("sink")["jsonl"]
    assert sink.package == "matrix-plugin-jsonl" and sink.plugin == "jsonl"
    assert host.registry("workflow")["relay"].package == "matrix-plugin-relay"
    assert host.registry("dataset_loader")["jsonl"].package == "matrix-core"  # built-ins use the same hooks


def test_duplicate_names_are_an_error_naming_both_packages(plugin_host):
    plugin_host.register(
        fake_plugin(register_workflows=lambda register: register(WorkflowSpec("relay", RelayOrchestrator))),
        name="copycat", package="matrix-plugin-copycat",
    )
    with pytest.raises(ConfigError) as err:
        plugin_host.registry("workflow")
    message = str(err.value)
    assert "'relay' is registered twice" in message
    assert "matrix-plugin-relay" in message and "matrix-plugin-copycat" in message


def test_wrong_spec_type_is_rejected(plugin_host):
    plugin_host.register(
        fake_plugin(register_sinks=lambda register: register(AgentSpec("x", Stamp))),
        name="confused", package="matrix-plugin-confused",
    )
    with pytest.raises(ConfigError, match="expected SinkSpec"):
        plugin_host.registry("sink")


def test_unregistering_a_test_plugin_restores_the_registry(plugin_host):
    plugin_host.register(
        fake_plugin(register_agents=lambda register: register(AgentSpec("extra.stamp", Stamp))),
        name="extra", package="matrix-plugin-extra",
    )
    assert "extra.stamp" in plugin_host.registry("agent")
    plugin_host.unregister("extra")
    assert "extra.stamp" not in plugin_host.registry("agent")


def test_load_selects_plugins_and_unknown_names_list_the_installed():
    host = PluginHost(load=["relay", "jsonl"]).ensure_loaded()
    assert set(host.plugin_names()) == {"core", "relay", "jsonl"}
    with pytest.raises(ConfigError, match=r"unknown plugin\(s\) nosuch; installed: .*relay"):
        PluginHost(load=["nosuch"]).ensure_loaded()


def test_block_disables_a_plugin():
    host = PluginHost(block=["relay"]).ensure_loaded()
    assert "relay" not in host.plugin_names()
    with pytest.raises(ConfigError, match=r"unknown workflow 'relay'; installed: .*dialogue"):
        host.get("workflow", "relay")


def test_environment_selection(monkeypatch):
    monkeypatch.setenv("MATRIX_LOAD_PLUGINS", "relay,jsonl")
    monkeypatch.setenv("MATRIX_DISABLE_PLUGINS", "jsonl")
    host = PluginHost.from_env().ensure_loaded()
    assert set(host.plugin_names()) == {"core", "relay"}


def test_a_broken_plugin_is_skipped_and_reported(monkeypatch):
    import matrix_core.plugins as plugins

    class BrokenEntryPoint:
        name, value, dist = "broken", "matrix_plugin_broken:nope", None

        def load(self):
            raise ImportError("No module named 'matrix_plugin_broken'")

    real = plugins.entry_points
    monkeypatch.setattr(plugins, "entry_points", lambda group: [*real(group=group), BrokenEntryPoint()])
    host = PluginHost().ensure_loaded()
    assert "broken" in host.broken and "relay" in host.plugin_names()
    assert any(e["name"] == "broken" and "error" in e for e in host.describe())


def test_describe_lists_what_each_plugin_registers():
    entries = {e["name"]: e for e in PluginHost().describe()}
    assert entries["relay"]["registers"] == {"agent": ["relay.stamp"], "config_dir": ["relay"], "workflow": ["relay"]}
    assert "run" in entries["core"]["registers"]["command"]


@pytest.mark.parametrize("kind", sorted(SPEC_KINDS))
def test_every_hook_is_documented_with_an_example(kind):
    hook = getattr(hookspecs, f"register_{kind}s")
    doc = inspect.getdoc(hook)
    assert doc and "Example::" in doc and "register(" in doc


def test_every_hook_has_a_spec_kind():
    hooks = {n for n in dir(hookspecs) if n.startswith("register_")}
    assert hooks == {f"register_{k}s" for k in SPEC_KINDS}


@pytest.mark.parametrize("kind", sorted(SPEC_KINDS))
def test_every_hook_is_called_by_the_host(plugin_host, kind):
    seen = []
    spec_type = SPEC_KINDS[kind]
    sample = {"name": f"probe-{kind}"}
    fields = {f for f in spec_type.__dataclass_fields__}
    for field in fields - {"name", "description", "config_name", "info"}:
        sample[field] = object
    plugin_host.register(
        fake_plugin(**{f"register_{kind}s": lambda register: (seen.append(1), register(spec_type(**sample)))}),
        name="probe", package="matrix-plugin-probe",
    )
    assert plugin_host.registry(kind)[f"probe-{kind}"].package == "matrix-plugin-probe" and seen == [1]
