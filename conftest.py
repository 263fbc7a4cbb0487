"""Shared by the core's and every plugin's tests."""
import logging

import pytest


@pytest.fixture(autouse=True)
def _matrix_logs_reach_caplog():
    # An in-process `matrix` command stops the "matrix" logger propagating (so the CLI prints
    # each line once); later tests in the same session still need caplog to see its records.
    matrix_log = logging.getLogger("matrix")
    propagate, handlers = matrix_log.propagate, list(matrix_log.handlers)
    matrix_log.propagate = True
    yield
    matrix_log.propagate, matrix_log.handlers[:] = propagate, handlers
