"""The sink interface: the terminal role that makes results durable."""
from __future__ import annotations

from typing import Any, Iterable, Mapping


class Sink:
    """Writes finished tasks. Shaped like Ray Data's ``Datasink``.

    The runtime guarantees ``write`` sees each task id at most once per run and calls
    ``flush`` after every batch; ``existing_ids`` lets a run skip what an earlier run wrote.
    """

    def __init__(self, config: Mapping[str, Any]):
        self.config = config

    def existing_ids(self) -> dict[str, str]:
        """Task ids already in the output, mapped to their status (for resume)."""
        return {}

    def open(self) -> None:
        pass

    def remove(self, task_ids: set[str]) -> None:
        """Drops these tasks from the output (``resume.retry_failed``: redo failed tasks)."""
        from .errors import ConfigError

        raise ConfigError(f"sink {type(self).__name__} cannot remove records, so resume.retry_failed is not supported")

    def write(self, records: Iterable[Mapping[str, Any]]) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    @property
    def location(self) -> str:
        return str(self.config.get("path", ""))
