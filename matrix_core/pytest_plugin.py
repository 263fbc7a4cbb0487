"""Pytest fixtures for Matrix plugin authors (entry point ``pytest11``: loaded automatically).

- ``matrix_ray``: one local Ray per test session (``address="local"``, own temp dir, so a
  test never attaches to or stops another Ray on the machine).
- ``plugin_host``: a fresh :class:`PluginHost` installed as the process-wide host for one
  test; ``plugin_host.register(module, name, package)`` adds a fake plugin.
- ``fake_llm``: an :class:`LLMClient` on the in-process fake endpoint (``fake://``).
"""
from __future__ import annotations

import os
import tempfile

import pytest


def pytest_addoption(parser):
    parser.addoption("--matrix-num-cpus", default=os.environ.get("MATRIX_TEST_NUM_CPUS", "2"), help="CPUs of the shared test Ray")


@pytest.fixture(scope="session")
def matrix_ray(request):
    import ray

    if not ray.is_initialized():
        from matrix_core._private.ray_start import init_local  # retried when a busy machine makes Ray time out

        init_local(dict(
            address="local",
            num_cpus=int(request.config.getoption("--matrix-num-cpus")),
            include_dashboard=False,
            _temp_dir=os.path.join(tempfile.gettempdir(), f"matrix-test-ray-{os.getpid()}"),
            logging_level="WARNING",
            _node_ip_address="127.0.0.1",
        ))
    yield ray
    ray.shutdown()


@pytest.fixture
def plugin_host():
    from matrix_core.plugins import PluginHost, set_plugin_host

    host = PluginHost(load=os.environ.get("MATRIX_LOAD_PLUGINS", "").split(",") if os.environ.get("MATRIX_LOAD_PLUGINS") else None)
    previous = set_plugin_host(host)
    try:
        yield host.ensure_loaded()
    finally:
        set_plugin_host(previous)


@pytest.fixture
def fake_llm():
    """A client on the fake endpoint; use it inside ``asyncio.run(...)``."""
    from matrix_core.llm import LLMClient
    from matrix_core.testing import FAKE_ENDPOINT

    return LLMClient([FAKE_ENDPOINT])
