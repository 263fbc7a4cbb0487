"""Where a task goes next: the one routing rule, used by the driver and by every agent host."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

from .messages import LoadReport, ReplicaSlot


@dataclass
class ReplicaRef:
    """A replica as seen from elsewhere: ``load`` is the last known one, refreshed by replies."""

    host: int
    index: int
    capacity: int
    load: int = 0


class LocalReplica(Protocol):
    index: int
    max_in_flight: int

    @property
    def load(self) -> int: ...


class Router:
    """One process's view of every replica's load.

    :meth:`pick` prefers a replica in this process while it has room (no serialization, no
    Ray call), else the least-loaded replica anywhere by load/capacity. ``here`` is the host
    index of this process (None for the driver, which hosts no replica).
    """

    def __init__(self, replicas: dict[str, list[ReplicaSlot]], here: int | None = None):
        self.here = here
        self.refs = {role: [ReplicaRef(*slot) for slot in slots] for role, slots in replicas.items()}
        self._by_key = {(role, r.host, r.index): r for role, refs in self.refs.items() for r in refs}

    def role_names(self) -> str:
        return ", ".join(sorted(self.refs))

    def pick(self, role: str, local: Sequence[LocalReplica] = ()) -> ReplicaRef | None:
        """The replica ``role``'s next task goes to (None if no replica plays ``role``).

        A remote pick counts one more load on it until the peer's next report says otherwise.
        """
        refs = self.refs.get(role)
        if not refs:
            return None
        if local:
            best = min(local, key=lambda r: r.load)
            if best.load < best.max_in_flight or len(local) == len(refs):
                return self._by_key[(role, self.here, best.index)]
            for rep in local:
                self._by_key[(role, self.here, rep.index)].load = rep.load
        target = min(refs, key=lambda r: r.load / r.capacity)
        if target.host != self.here:
            target.load += 1
        return target

    def update(self, report: LoadReport) -> None:
        """A peer's ``deliver`` reply carries its replicas' loads: refresh our view of them."""
        for role, by_index in report.loads.items():
            for index, load in by_index.items():
                ref = self._by_key.get((role, report.host, index))
                if ref is not None:
                    ref.load = load
