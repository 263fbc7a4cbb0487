"""Command lines a user gets wrong: Hydra syntax, flags, sub-commands. One line each."""
from __future__ import annotations

import pytest

from .conftest import cli, one_error

HYDRA = [
    (["=5"], "workflow 'relay': "),
    (["~run"], "config section 'run' was removed (~run)"),
    (["~dataset"], "config section 'dataset' was removed"),
    (["run.nokey=1"], "Could not override 'run.nokey'"),
    (["run.max_steps"], "Error parsing override 'run.max_steps'"),
    (["run.max_steps=[1,2"], "cannot parse override 'run.max_steps=[1,2'"),
    (["run.max_steps='unclosed"], "run.max_steps='unclosed"),
    (["run.max_steps=${nope}"], "config: "),
    (["run.max_steps=${oc.env:MATRIX_HOSTILE_UNSET_VAR}"], "config: "),
    (["llm=nope"], "Could not override 'llm'. No match in the defaults list"),
    (["+llm=nope"], "Could not find 'llm/nope'"),
    (["dataset.size=1", "dataset.size=2", "~dataset.size=3"], "workflow 'relay': "),
    (["hydra.nope=1"], "workflow 'relay': "),
    (["run.max_steps=0"], "run.max_steps=0: expected an integer >= 1"),  # not silently 1000 nor 100
    (["run.max_concurrent_tasks=0"], "run.max_concurrent_tasks=0: expected an integer >= 1"),
    (["run.max_concurrent_tasks=-4"], "run.max_concurrent_tasks=-4: expected an integer >= 1"),
    (["-m", "dataset.size=1", "--cfg", "job"], "Only one of --run, --multirun, --cfg, --info and --shell_completion can be specified"),
    (["--cfg", "bogus"], "argument --cfg/-c: invalid choice: 'bogus'"),
    (["--info", "nonsense"], "argument --info/-i: invalid choice: 'nonsense'"),
    (["--cfg", "job", "run.nokey=1"], "Could not override 'run.nokey'"),
    (["--address"], "--address needs a value"),
    (["--cluster"], "--cluster needs a value"),
    (["--cluster", "nosuch-hostile"], "unknown cluster 'nosuch-hostile'"),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("args, expected", [pytest.param(a, e, id=" ".join(a)) for a, e in HYDRA])
def test_hydra_and_run_flags_are_one_line(tmp_path, monkeypatch, args, expected):
    monkeypatch.setenv("MATRIX_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # nothing may be written to the test's folder either
    one_error(cli("run", "relay", "run.progress=off", *args), expected)
    assert list(tmp_path.iterdir()) == []


COMMANDS = [
    (["run"], "name a workflow: matrix run WORKFLOW"),
    (["run", "nosuch"], "unknown workflow 'nosuch'; installed: "),
    (["run", "relay.stamp"], "unknown workflow 'relay.stamp'"),
    (["-p", "bogus", "run", "relay"], "-p expects no:NAME to disable a plugin, got 'bogus'"),
    (["-p", "no:relay", "run", "relay"], "unknown workflow 'relay'"),
    (["bogus"], "No such command 'bogus'"),
    (["--bogus"], "No such option '--bogus'"),
    (["plugins", "--nope"], "No such option '--nope'"),
    (["new", "agent"], "Missing argument 'NAME'"),
    (["new", "agent", "Bad-Name"], "invalid plugin name 'Bad-Name'"),
    (["new", "agent", "relay"], "a workflow named 'relay' is already installed"),
    (["new", "agent", "x", "-o", "/proc/nope"], "cannot create /proc/nope/matrix-plugin-x"),
    (["services", "stop"], "Missing argument 'NAME'"),
    (["services", "stop", "x"], "matrix services needs a running Ray cluster"),
    (["services", "start", "x", "run.hosts=2"], "matrix services start takes llm overrides only"),
    (["services", "start", "bad name", "llm=fake"], "service name 'bad name'"),
    (["services", "list", "--cluster", "nosuch-hostile"], "unknown cluster 'nosuch-hostile'"),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("args, expected", [pytest.param(a, e, id=" ".join(a)) for a, e in COMMANDS])
def test_bad_command_is_one_line(tmp_path, monkeypatch, args, expected):
    monkeypatch.setenv("MATRIX_HOME", str(tmp_path))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.chdir(tmp_path)
    one_error(cli(*args), expected)


@pytest.mark.timeout(120)
def test_help_still_works(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for args in (["--help"], ["run", "--help"], ["run", "relay", "--help"]):
        result = cli(*args)
        assert result.exit_code == 0 and "Traceback" not in result.output, (args, result.stderr)
