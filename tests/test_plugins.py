"""The plugin host: discovery, typed registration, duplicates, selection, documentation.

Only the core is needed: installed plugins are real distributions written to a temporary
directory on ``sys.path`` (``installed``), found through importlib.metadata like any other.
"""

import inspect
import json
import sys
import textwrap
import types

import pytest

from matrix_core import AgentSpec, ConfigError, SinkSpec, WorkflowSpec, hookimpl, hookspecs
from matrix_core.agent import Agent
from matrix_core.default_plugins import DEFAULT_PLUGINS
from matrix_core.plugins import PluginHost
from matrix_core.protocol import Orchestrator
from matrix_core.sink import Sink
from matrix_core.specs import SPEC_KINDS

CORE = {f"core.{m}" for m in DEFAULT_PLUGINS}


class RelayOrchestrator(Orchestrator):
    def next_role(self):
        return None


class Stamp(Agent):
    async def step(self, orch):
        return None


class NullSink(Sink):
    pass


def fake_plugin(**hooks):
    module = types.ModuleType("fake_plugin")
    for name, fn in hooks.items():
        setattr(module, name, hookimpl(fn))
    return module


PROBE_MODULE = """
from matrix_core import AgentSpec, SinkSpec, WorkflowSpec, hookimpl
from tests_probe_types import RelayOrchestrator, Stamp, NullSink

@hookimpl
def register_workflows(register):
    register(WorkflowSpec("{name}", RelayOrchestrator))

@hookimpl
def register_agents(register):
    register(AgentSpec("{name}.stamp", Stamp))
"""


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """``installed(name, body=..., requires=[...])`` installs plugin ``name`` as a distribution."""
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules["tests_probe_types"] = sys.modules[__name__]

    def install(name, body=PROBE_MODULE, requires=("matrix-core",), version="0.1.0"):
        module = f"matrix_plugin_{name}"
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(body.replace("{name}", name)))
        info = tmp_path / f"{module}-{version}.dist-info"
        info.mkdir()
        meta = ["Metadata-Version: 2.1", f"Name: matrix-plugin-{name}", f"Version: {version}"]
        (info / "METADATA").write_text("\n".join([*meta, *(f"Requires-Dist: {r}" for r in requires)]) + "\n")
        (info / "entry_points.txt").write_text(f"[matrix]\n{name} = {module}\n")
        return name

    yield install
    sys.modules.pop("tests_probe_types", None)


def test_installed_entry_points_are_discovered_with_their_package(installed):
    installed("probe")
    host = PluginHost().ensure_loaded()
    assert host.registry("workflow")["probe"].package == "matrix-plugin-probe"
    assert host.registry("agent")["probe.stamp"].plugin == "probe"
    assert host.registry("dataset_loader")["jsonl"].package == "matrix-core"  # built-ins use the same hooks


def test_duplicate_names_are_an_error_naming_both_packages(installed):
    installed("alpha")
    plugin_host = PluginHost().ensure_loaded()
    plugin_host.register(
        fake_plugin(register_workflows=lambda register: register(WorkflowSpec("alpha", RelayOrchestrator))),
        name="copycat",
        package="matrix-plugin-copycat",
    )
    with pytest.raises(ConfigError) as err:
        plugin_host.registry("workflow")
    message = str(err.value)
    assert "'alpha' is registered twice" in message
    assert "matrix-plugin-alpha" in message and "matrix-plugin-copycat" in message


def test_wrong_spec_type_is_rejected(plugin_host):
    plugin_host.register(
        fake_plugin(register_sinks=lambda register: register(AgentSpec("x", Stamp))),
        name="confused",
        package="matrix-plugin-confused",
    )
    with pytest.raises(ConfigError, match="expected SinkSpec"):
        plugin_host.registry("sink")


def test_unregistering_a_test_plugin_restores_the_registry(plugin_host):
    plugin_host.register(
        fake_plugin(register_agents=lambda register: register(AgentSpec("extra.stamp", Stamp))),
        name="extra",
        package="matrix-plugin-extra",
    )
    assert "extra.stamp" in plugin_host.registry("agent")
    plugin_host.unregister("extra")
    assert "extra.stamp" not in plugin_host.registry("agent")


def test_load_selects_plugins_and_unknown_names_list_the_installed(installed):
    installed("alpha"), installed("other")
    host = PluginHost(load=["alpha"]).ensure_loaded()
    assert set(host.plugin_names()) == {*CORE, "alpha"}
    with pytest.raises(ConfigError, match=r"unknown plugin\(s\) nosuch; installed: .*alpha"):
        PluginHost(load=["nosuch"]).ensure_loaded()


def test_block_disables_a_plugin_through_pluggy(installed):
    installed("alpha"), installed("other")
    host = PluginHost(block=["alpha"]).ensure_loaded()
    assert "alpha" not in host.plugin_names() and host.pm.is_blocked("alpha")
    host.register(fake_plugin(), name="alpha", package="matrix-plugin-alpha")  # stays blocked
    with pytest.raises(ConfigError, match=r"unknown workflow 'alpha'; installed: .*other"):
        host.get("workflow", "alpha")


def test_environment_selection(installed, monkeypatch):
    installed("alpha"), installed("other")
    monkeypatch.setenv("MATRIX_LOAD_PLUGINS", "alpha,other")
    monkeypatch.setenv("MATRIX_DISABLE_PLUGINS", "other")
    host = PluginHost.from_env().ensure_loaded()
    assert set(host.plugin_names()) == {*CORE, "alpha"}


def test_a_plugin_that_fails_to_import_is_skipped_and_reported(installed):
    installed("alpha")
    installed("broken", body="raise ImportError('No module named matrix_plugin_missing')")
    host = PluginHost().ensure_loaded()
    assert "broken" in host.broken and "alpha" in host.plugin_names()
    assert any(e["name"] == "broken" and "ImportError" in e["error"] for e in host.describe())


def test_a_misspelled_hook_is_an_error_naming_the_plugin_and_the_hook(installed, plugin_host):
    with pytest.raises(
        ConfigError,
        match=r"plugin 'typo' \(matrix-plugin-typo\): unknown hook 'register_agent' "
        r"\(did you mean 'register_agents'\?\)",
    ):
        plugin_host.register(
            fake_plugin(register_agent=lambda register: None), name="typo", package="matrix-plugin-typo"
        )
    assert "typo" not in plugin_host.plugin_names()
    # Installed, it is skipped with the same line and the others still load.
    installed("alpha")
    installed("typo", body="from matrix_core import hookimpl\n@hookimpl\ndef register_agent(register):\n    pass\n")
    host = PluginHost().ensure_loaded()
    assert "unknown hook 'register_agent'" in host.broken["typo"] and "alpha" in host.registry("workflow")


def test_a_hook_that_raises_skips_its_plugin_not_the_others(installed):
    installed("alpha")
    installed(
        "flaky",
        body="from matrix_core import hookimpl\n@hookimpl\ndef register_sinks(register):\n"
        "    raise RuntimeError('boom')\n",
    )
    host = PluginHost().ensure_loaded()
    assert "alpha" in host.registry("workflow") and "jsonl" in host.registry("dataset_loader")
    assert host.broken["flaky"] == "register_sinks raised RuntimeError: boom"
    assert "flaky" not in host.plugin_names()


def test_a_plugin_for_another_core_version_is_refused_with_one_line(installed):
    from matrix_core.plugins import core_version

    installed("future", requires=["matrix-core>=99,<100", "pydantic"])
    installed("current", requires=[f"matrix-core=={core_version()}"])
    host = PluginHost().ensure_loaded()
    assert "future" not in host.plugin_names() and "current" in host.plugin_names()
    why = host.broken["future"]
    assert why == f"matrix-plugin-future 0.1.0 needs matrix-core<100,>=99, installed is {core_version()}"


def test_hooks_run_in_pluggy_order_tryfirst_and_trylast_included(plugin_host):
    order = []

    def plugin(tag, **opts):
        module = types.ModuleType(tag)

        def register_sinks(register):
            order.append(tag)
            register(SinkSpec(f"sink-{tag}", NullSink))

        module.register_sinks = hookimpl(**opts)(register_sinks)
        return module

    for tag, opts in [("late", {"trylast": True}), ("a", {}), ("early", {"tryfirst": True}), ("b", {})]:
        plugin_host.register(plugin(tag, **opts), name=tag, package=f"matrix-plugin-{tag}")
    plugin_host.registry("sink")
    ours, order[:] = list(order), []
    plugin_host.pm.hook.register_sinks(register=lambda spec: None)  # pluggy's own call
    assert ours == order == ["early", "b", "a", "late"]


def test_tracing_prints_one_json_line_per_hook_call(plugin_host, capsys):
    host = PluginHost(trace=True).ensure_loaded()
    host.registry("sink")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    loaders = [t for t in lines if t["hook"] == "register_dataset_loaders" and t["plugin"] == "core.loaders"]
    assert loaders and loaders[0]["registered"] == ["jsonl", "csv", "range"] and "duration_ms" in loaders[0]


def test_describe_lists_what_each_plugin_registers(installed):
    installed("alpha")
    entries = {e["name"]: e for e in PluginHost().describe()}
    assert entries["alpha"]["registers"] == {"agent": ["alpha.stamp"], "workflow": ["alpha"]}
    assert "run" in entries["core.commands"]["registers"]["command"]


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
        name="probe",
        package="matrix-plugin-probe",
    )
    assert plugin_host.registry(kind)[f"probe-{kind}"].package == "matrix-plugin-probe" and seen == [1]
