"""Task snapshots for ``run.checkpoint_every``."""
from __future__ import annotations

import copy
from typing import Any

from ..protocol import Orchestrator

# Offloaded parts are immutable object-store references, and the payload is the row as read.
_SHARED = ("payload", "history_segments")


def snapshot(orch: Orchestrator) -> Orchestrator:
    """A copy that later steps cannot change.

    The snapshot waits in an outbox while the task moves on, so a shallow copy would share
    ``state`` (and the history) with the live task and record steps not yet counted in
    ``steps``: a task continued from it would skip work.
    """
    fields = {k: _copy(v) for k, v in orch.__dict__.items() if k not in _SHARED}
    return orch.model_copy(update={**fields, "history_segments": list(orch.history_segments)})


def _copy(value: Any) -> Any:
    try:
        return copy.deepcopy(value)
    except Exception:  # something that cannot be copied (a lock, a handle) is shared; the rest is copied
        if isinstance(value, dict):
            return {k: _copy(v) for k, v in value.items()}
        if isinstance(value, list):
            return [_copy(v) for v in value]
        return value
