"""A broken plugin must not break other commands; a dead cluster address must fail in
bounded time with one line (real processes: a hang is what is tested)."""
from __future__ import annotations

import os
import socket
import types

import pytest

from matrix_core import hookimpl
from matrix_core.testing import free_port

from .conftest import cli, matrix_subprocess, one_error


def _raising(hook: str):
    module = types.ModuleType(f"hostile_{hook}")

    def impl(register):
        raise RuntimeError(f"{hook} exploded")

    impl.__name__ = hook
    setattr(module, hook, hookimpl(impl))
    return module


HOOKS = ["register_agents", "register_workflows", "register_sinks", "register_commands", "register_config_dirs", "register_dataset_loaders"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("hook", HOOKS)
def test_plugin_whose_hook_raises_breaks_nothing_else(plugin_host, tmp_path, monkeypatch, hook):
    monkeypatch.chdir(tmp_path)
    plugin_host.register(_raising(hook), "hostile-broken", "hostile-broken-pkg")
    listing = cli("plugins")
    assert listing.exit_code == 0, listing.stderr
    assert f"skipped: {hook} raised RuntimeError: {hook} exploded" in listing.stdout and "relay" in listing.stdout
    assert cli("--help").exit_code == 0 and "plugins" in cli("--help").stdout
    config = cli("run", "relay", "--cfg", "job")
    assert config.exit_code == 0 and "workflow: relay" in config.stdout, config.stderr
    one_error(cli("run", "nosuch"), "unknown workflow 'nosuch'")


@pytest.mark.timeout(120)
def test_plugin_that_fails_to_import_is_skipped(tmp_path):
    # A real entry point whose module raises on import: the other plugins keep working.
    dist = tmp_path / "hostile_broken-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hostile-broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[matrix]\nhostile_broken = hostile_broken_mod\n")
    (tmp_path / "hostile_broken_mod.py").write_text("raise ImportError('hostile import failure')\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}:{os.environ.get('PYTHONPATH', '')}"}
    proc = matrix_subprocess("plugins", env=env)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "skipped: ImportError: hostile import failure" in proc.stdout and "relay" in proc.stdout
    one_error(matrix_subprocess("run", "nosuch", env=env), "unknown workflow 'nosuch'")


def _silent_listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


@pytest.mark.timeout(300)
@pytest.mark.parametrize("command, peer", [  # services have no run.connect_timeout_s: the silent peer costs its 30 s default there
    (c, p) for c in ("run", "services-stop", "services-list") for p in ("refused", "silent", "http") if p != "silent" or c == "run"])
def test_dead_address_fails_in_bounded_time(tmp_path, command, peer):
    listener = http = None
    if peer == "refused":
        address = f"127.0.0.1:{free_port()}"
    elif peer == "silent":  # accepts, never answers
        listener = _silent_listener()
        address = f"127.0.0.1:{listener.getsockname()[1]}"
    else:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        import threading

        http = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
        threading.Thread(target=http.serve_forever, daemon=True).start()
        address = f"127.0.0.1:{http.server_address[1]}"
    env = {**os.environ, "MATRIX_HOME": str(tmp_path)}
    env.pop("RAY_ADDRESS", None)
    try:
        if command == "run":
            args = ["run", "relay", "--address", address, "run.connect_timeout_s=3", f"output.path={tmp_path / 'o.jsonl'}"]
        else:
            args = ["services", command.split("-")[1], *(["x"] if command == "services-stop" else []), "--address", address]
        proc = matrix_subprocess(*args, env=env, timeout=240)
    finally:
        if listener is not None:
            listener.close()
        if http is not None:
            http.shutdown()
    expected = {"refused": "Connection refused", "silent": "no answer; gave up after", "http": "something else listens there"}[peer]
    one_error(proc, f"cannot start or join Ray at {address!r}: no Ray cluster answers", expected)
    assert not (tmp_path / "o.jsonl").exists()
