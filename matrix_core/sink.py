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

    def write(self, records: Iterable[Mapping[str, Any]]) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    @property
    def location(self) -> str:
        return str(self.config.get("path", ""))
