"""Task snapshots for ``run.checkpoint_every``."""
from __future__ import annotations

import copy

from ..protocol import Orchestrator

# Offloaded parts are immutable object-store references, and the payload is the row as read.
_SHARED = ("payload", "history_segments")


def snapshot(orch: Orchestrator) -> Orchestrator:
    """A copy that later steps cannot change.

    The snapshot waits in an outbox while the task moves on, so a shallow copy would share
    ``state`` (and the history) with the live task and record steps not yet counted in
    ``steps``: a task continued from it would skip work.
    """
    fields = {k: v for k, v in orch.__dict__.items() if k not in _SHARED}
    return orch.model_copy(update={**copy.deepcopy(fields), "history_segments": list(orch.history_segments)})
