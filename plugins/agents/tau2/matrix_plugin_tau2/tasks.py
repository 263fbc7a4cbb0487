"""tau2 task sets: selection by domain, split and ids, and the ``tau2`` dataset loader."""
from __future__ import annotations

import functools
import textwrap
from typing import Any, Iterator, Mapping, Sequence

from matrix_core import ConfigError

from .env import DOMAINS, load_json
from .versions import DEFAULT_VERSION, behaviour_for, get_version

SPLITS = ("train", "test", "base")


@functools.lru_cache(maxsize=None)
def _task_file(domain: str, variant: str, version: str = DEFAULT_VERSION) -> tuple[dict[str, Any], ...]:
    return tuple(load_json(get_version(version).path(f"domains/{domain}/{variant}.json")))


@functools.lru_cache(maxsize=None)
def _splits(domain: str, version: str = DEFAULT_VERSION) -> dict[str, list[str]]:
    path = get_version(version).path(f"domains/{domain}/split_tasks.json")
    return load_json(path) if path.is_file() else {}


def split_names(domain: str, data_version: str | None = None) -> list[str]:
    return sorted(_splits(domain, data_version or DEFAULT_VERSION))


def load_tasks(domain: str, split: str | None = None, task_ids: Sequence[str] | None = None,
               data_version: str | None = None) -> list[dict[str, Any]]:
    """The domain's tasks, in file order: all of them, one split's, or the named ids.

    ``split`` is a key of the domain's ``split_tasks.json`` (train / test / base); telecom's
    ``base`` is its original 114-task file, as in tau2. ``data_version``: see :mod:`.versions`.
    """
    if domain not in DOMAINS:
        raise ConfigError(f"unknown tau2 domain {domain!r}; known: {', '.join(DOMAINS)}")
    try:
        version = get_version(data_version).name
    except KeyError as exc:
        raise ConfigError(exc.args[0]) from None
    variant = "tasks_base" if domain == "telecom" and split == "base" else "tasks"
    tasks = _task_file(domain, variant, version)
    if split is not None and variant == "tasks":
        splits = _splits(domain, version)
        if split not in splits:
            raise ConfigError(f"tau2 domain {domain!r} has no split {split!r}; it has: {', '.join(sorted(splits)) or 'none'}")
        wanted = set(splits[split])
        tasks = tuple(t for t in tasks if t["id"] in wanted)
    if task_ids:
        ids = [str(i) for i in task_ids]
        by_id = {t["id"]: t for t in tasks}
        missing = [i for i in ids if i not in by_id]
        if missing:
            where = f"split {split!r} of " if split else ""
            raise ConfigError(f"tau2 task ids not in {where}domain {domain!r}: {', '.join(missing[:10])}")
        tasks = tuple(by_id[i] for i in ids)
    return list(tasks)


def load_dataset(cfg: Mapping[str, Any]) -> Iterator[tuple[int, Any]]:
    """Dataset loader ``tau2``: one row per task, ``{"id", "domain", "task"}``.

    Config: ``domain``, ``split`` (null = every task), ``task_ids`` (list or comma string),
    ``data_version`` (null = the default), ``behaviour`` (checked here, before Ray starts).
    """
    try:
        behaviour_for(cfg.get("data_version"), cfg.get("behaviour") or {})
    except (KeyError, ValueError, TypeError) as exc:
        raise ConfigError(str(exc.args[0]) if exc.args else str(exc)) from None
    domain = str(cfg.get("domain") or "mock")
    serves = cfg.get("serves")
    if serves is not None and domain not in serves:
        raise ConfigError(f"domain={domain}: its prompt does not fit the context of this LLM, which serves {', '.join(serves)} "
                          f"(llm.tau2_domains); use a model with a longer context, e.g. llm=endpoint llm.base_url=URL")
    split = cfg.get("split") or None
    ids = cfg.get("task_ids")
    if isinstance(ids, str):
        ids = [i.strip() for i in ids.split(",") if i.strip()]
    elif isinstance(ids, (int, float)):
        ids = [str(ids)]
    tasks = load_tasks(domain, split, list(ids) if ids else None, cfg.get("data_version"))  # errors now, before Ray starts

    def rows() -> Iterator[tuple[int, Any]]:
        for number, task in enumerate(tasks, start=1):
            yield number, {"id": task["id"], "domain": domain, "task": task}

    return rows()


def scenario_text(user_scenario: Mapping[str, Any]) -> str:
    """The user scenario as tau2 shows it to the user simulator (persona, then instructions)."""
    lines = []
    if user_scenario.get("persona") is not None:
        lines += ["Persona:", textwrap.indent(str(user_scenario["persona"]), "\t")]
    lines += ["Instructions:", textwrap.indent(_instructions_text(user_scenario.get("instructions")), "\t")]
    return "\n".join(lines)


def _instructions_text(instructions: Any) -> str:
    if not isinstance(instructions, Mapping):
        return str(instructions or "")
    tab = "\t"
    lines = [f"Domain: {instructions.get('domain')}"]
    lines.append(f"Reason for call:\n{textwrap.indent(str(instructions.get('reason_for_call') or ''), tab)}")
    if instructions.get("known_info") is not None:
        lines.append(f"Known info:\n{textwrap.indent(str(instructions['known_info']), tab)}")
    if instructions.get("unknown_info") is not None:
        lines.append(f"Unknown info:\n{textwrap.indent(str(instructions['unknown_info']), tab)}")
    lines.append(f"Task instructions:\n{textwrap.indent(str(instructions.get('task_instructions') or ''), tab)}")
    return "\n".join(lines)
