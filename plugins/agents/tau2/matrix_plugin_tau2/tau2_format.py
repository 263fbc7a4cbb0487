"""tau2's results format, in and out.

A tau2 results file is one JSON object: ``info`` (the run: domain, agent, user, limits),
``tasks`` (the task definitions the run used) and ``simulations`` (one per trajectory:
``task_id``, ``trial``, ``termination_reason``, ``messages``, ``reward_info``). Messages are
``{"role": "assistant"|"user", "content", "tool_calls": [{"id", "name", "arguments",
"requestor"}]}`` and ``{"role": "tool", "id", "content", "requestor", "error"}``; several
results of one turn may come as ``{"role": "tool", "tool_messages": [...]}``.

- :func:`score_results` re-scores every simulation of such a file with :func:`evaluate`,
  against the tasks the file carries (as tau2's own re-scoring does), and writes
  ``reward_info`` in tau2's shape; what tau2 has no field for (data version, replay
  warnings) goes under ``reward_info.info.matrix``.
- :func:`records_to_results` turns records of ``matrix run tau2`` into such a file, so
  tau2's own tools (its metrics, viewer, re-scoring) read Matrix trajectories.
"""
from __future__ import annotations

import datetime
import json
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from matrix_core import ConfigError

from .env import DOMAINS
from .evaluation import evaluate
from .versions import DEFAULT_VERSION, VERSIONS, Behaviour, behaviour_for

NL_FROM_FILE = "taken from the file's reward_info"


class Tau2FormatError(ConfigError):
    """A file that is not a tau2 results file; the message names the file and the place."""


# --- reading ---------------------------------------------------------------------------


def read_results(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise Tau2FormatError(f"{p}: no such file")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise Tau2FormatError(f"{p}: not a JSON file ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("simulations"), list) or not isinstance(data.get("tasks"), list):
        raise Tau2FormatError(f"{p}: not a tau2 results file (needs 'info', 'tasks' and 'simulations')")
    return data


def results_domain(results: Mapping[str, Any]) -> str:
    """The file's domain as a domain of this plugin (tau2's ``telecom-workflow`` is telecom)."""
    name = str((((results.get("info") or {}).get("environment_info") or {}).get("domain_name")) or "")
    base = "telecom" if name.startswith("telecom") else name
    if base not in DOMAINS:
        raise Tau2FormatError(f"domain {name!r} of the results file is not one of {', '.join(DOMAINS)}")
    return base


def flat_messages(messages: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """tau2 messages with each multi-tool message expanded into its tool messages."""
    out = []
    for m in messages:
        if m.get("role") == "tool" and isinstance(m.get("tool_messages"), list):
            out.extend(dict(t) for t in m["tool_messages"])
        else:
            out.append(dict(m))
    return out


def _criteria_key(task: Mapping[str, Any]) -> Any:
    c = task.get("evaluation_criteria") or {}
    actions = [(a.get("name"), json.dumps(a.get("arguments") or {}, sort_keys=True)) for a in c.get("actions") or []]
    return actions, sorted(c.get("reward_basis") or ["DB", "COMMUNICATE"]), sorted(c.get("communicate_info") or [])


def detect_data_version(domain: str, tasks: Sequence[Mapping[str, Any]]) -> list[str]:
    """The shipped data versions whose tasks the file's tasks are (same ids, gold actions,
    reward basis, communicate info). Several when the versions agree on these tasks."""
    from .tasks import load_tasks

    found = []
    for name in VERSIONS:
        shipped = {t["id"]: t for t in load_tasks(domain, None, None, name)}
        if domain == "telecom":
            shipped.update({t["id"]: t for t in load_tasks(domain, "base", None, name)})
        if all(str(t.get("id")) in shipped and _criteria_key(shipped[str(t["id"])]) == _criteria_key(t) for t in tasks):
            found.append(name)
    return found


# --- scoring -----------------------------------------------------------------------------


def to_tau2_reward_info(info: Mapping[str, Any], task: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``evaluate()``'s result in the shape of tau2's ``RewardInfo``."""
    criteria = task.get("evaluation_criteria") or {}
    gold = criteria.get("actions") or []
    db = info.get("db_check")
    out = {
        "reward": info["reward"],
        "db_check": {"db_match": db["db_match"], "db_reward": db["db_reward"]} if db else None,
        "env_assertions": [
            {"env_assertion": {"env_type": c["env_type"], "func_name": c["func_name"], "arguments": c["arguments"],
                               "assert_value": c["assert_value"], "message": None},
             "met": c["met"], "reward": c["reward"]}
            for c in info.get("env_assertions") or []
        ] if info.get("reward_basis") is not None else None,
        "action_checks": [{"action": dict(action), "action_match": c["action_match"], "action_reward": c["action_reward"]}
                          for action, c in zip(gold, info.get("action_checks") or [])] or None,
        "nl_assertions": [{"nl_assertion": c.get("nl_assertion"), "met": c["met"], "justification": c.get("justification") or ""}
                          for c in info["nl_assertions"]] if info.get("nl_assertions") is not None else None,
        "communicate_checks": [{"info": c["info"], "met": c["met"], "justification": c["justification"]}
                               for c in info.get("communicate_checks") or []] or None,
        "reward_basis": info.get("reward_basis"),
        "reward_breakdown": dict(info.get("reward_breakdown") or {}) or None,
        "info": {**{k: v for k, v in (info.get("info") or {}).items() if k != "replay_warnings"}, "matrix": dict(extra or {})},
    }
    if (info.get("info") or {}).get("replay_warnings"):
        out["info"]["matrix"]["replay_warnings"] = info["info"]["replay_warnings"]
    if info.get("unevaluated"):
        out["info"]["matrix"]["unevaluated"] = info["unevaluated"]
    return out


def score_simulation(domain: str, task: Mapping[str, Any], simulation: Mapping[str, Any], behaviour: Behaviour,
                     data_version: str) -> dict[str, Any]:
    """tau2's ``reward_info`` for one simulation. NL assertion verdicts recorded in the file
    are used as they are (judging needs an LLM)."""
    recorded = simulation.get("reward_info") or {}
    nl_checks = recorded.get("nl_assertions") if isinstance(recorded.get("nl_assertions"), list) else None
    info = evaluate(domain, task, flat_messages(simulation.get("messages") or []),
                    termination_reason=str(simulation.get("termination_reason") or ""), nl_checks=nl_checks, behaviour=behaviour)
    extra: dict[str, Any] = {"data_version": data_version}
    if nl_checks is not None and info.get("nl_assertions") is not None:
        extra["nl_assertions"] = NL_FROM_FILE
    return to_tau2_reward_info(info, task, extra)


def score_results(results: Mapping[str, Any], data_version: str | None = None,
                  behaviour_overrides: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the results with every simulation re-scored, a summary). ``data_version`` None: the
    shipped version the file's tasks are (the default when it is one of several that match,
    else the first), else the default; its behaviour applies."""
    domain = results_domain(results)
    tasks = {str(t.get("id")): t for t in results["tasks"]}
    detected = detect_data_version(domain, list(tasks.values()))
    version = data_version or (DEFAULT_VERSION if DEFAULT_VERSION in detected else (detected[0] if detected else None))
    try:
        behaviour = behaviour_for(version, behaviour_overrides)
    except (KeyError, ValueError) as exc:
        raise ConfigError(str(exc.args[0]) if exc.args else str(exc)) from None
    version = version or DEFAULT_VERSION
    out = dict(results)
    sims, rewards, warned, missing = [], [], 0, []
    for n, sim in enumerate(results["simulations"]):
        task = tasks.get(str(sim.get("task_id")))
        if task is None:
            missing.append(str(sim.get("task_id")))
            sims.append(sim)
            continue
        reward_info = score_simulation(domain, task, sim, behaviour, version)
        sims.append({**sim, "reward_info": reward_info})
        rewards.append(reward_info["reward"])
        warned += bool(reward_info["info"]["matrix"].get("replay_warnings"))
    out["simulations"] = sims
    summary = {domain: {"simulations": len(rewards), "avg_reward": sum(rewards) / len(rewards) if rewards else None,
                        "data_version": version, "tasks_match_data_version": version in detected, "tasks_match": detected,
                        "with_replay_warnings": warned, "unknown_task_ids": sorted(set(missing))}}
    return out, summary


# --- writing Matrix records as tau2 results --------------------------------------------------


def record_to_simulation(record: Mapping[str, Any]) -> dict[str, Any]:
    """One ``matrix run tau2`` record as a tau2 simulation (messages from its history)."""
    messages = []
    for turn in record.get("history") or []:
        role = turn.get("role")
        if role in ("assistant", "user"):
            calls = [{"id": c.get("id") or "", "name": c.get("name"), "arguments": c.get("arguments") if isinstance(c.get("arguments"), dict) else {},
                      "requestor": role} for c in turn.get("tool_calls") or []]
            messages.append({"role": role, "content": turn.get("content"), "tool_calls": calls or None, "turn_idx": len(messages)})
        elif role == "tool":
            meta = turn.get("meta") or {}
            messages.append({"role": "tool", "id": turn.get("tool_call_id") or "", "content": turn.get("content"),
                             "requestor": meta.get("requestor", "assistant"), "error": bool(meta.get("error")), "turn_idx": len(messages)})
    now = datetime.datetime.now().isoformat()
    info = record.get("reward_info")
    task = task_by_id(str(record.get("domain")), str(record.get("tau2_task_id")), record.get("data_version")) if info else {}
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"matrix:{record.get('task_id')}")),
        "task_id": str(record.get("tau2_task_id") or task.get("id")),
        "timestamp": now, "start_time": now, "end_time": now, "duration": 0.0,
        "termination_reason": record.get("termination_reason") or "agent_error",
        "agent_cost": None, "user_cost": None,
        "reward_info": to_tau2_reward_info(info, task, {"data_version": record.get("data_version")}) if info and task else None,
        "messages": messages,
        "trial": int(record.get("trial") or 0),
        "seed": None,
    }


def records_to_results(records: Sequence[Mapping[str, Any]], tasks: Sequence[Mapping[str, Any]], domain: str,
                       config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A tau2 results file from records of one domain and the tasks they ran."""
    from .workflow import assistant_system_prompt

    config = config or {}
    agents = config.get("agents") or {}
    llm = config.get("llm") or {}
    return {
        "timestamp": datetime.datetime.now().isoformat(),
        "info": {
            "git_commit": "matrix", "num_trials": int((config.get("run") or {}).get("trials") or 1),
            "max_steps": int(config.get("max_steps") or 100), "max_errors": int(config.get("max_errors") or 10),
            "user_info": {"implementation": "matrix:tau2.user", "llm": llm.get("model"),
                          "llm_args": {k: v for k, v in (agents.get("user") or {}).items() if k in ("temperature", "top_p", "max_tokens")}},
            "agent_info": {"implementation": "matrix:tau2.assistant", "llm": llm.get("model"),
                           "llm_args": {k: v for k, v in (agents.get("assistant") or {}).items() if k in ("temperature", "top_p", "max_tokens")}},
            "environment_info": {"domain_name": domain, "policy": assistant_system_prompt(domain), "tool_defs": None},
            "seed": None,
        },
        "tasks": [dict(t) for t in tasks],
        "simulations": [record_to_simulation(r) for r in records],
    }


def export_records(records: Iterable[Mapping[str, Any]], out: str | Path, config: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Writes one tau2 results file per domain of the records (``out`` for one domain,
    ``out`` with ``_<domain>`` before the suffix for several). Tasks come from the records."""
    by_domain: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in records:
        if r.get("status") == "done" and r.get("domain"):
            by_domain[str(r["domain"])].append(r)
    out = Path(out)
    written = {}
    for domain, recs in sorted(by_domain.items()):
        tasks = {}
        for r in recs:
            tid = str(r.get("tau2_task_id"))
            if tid not in tasks:
                tasks[tid] = task_by_id(domain, tid, r.get("data_version"))
        path = out if len(by_domain) == 1 else out.with_name(f"{out.stem}_{domain}{out.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(records_to_results(recs, list(tasks.values()), domain, config), indent=2), encoding="utf-8")
        written[domain] = path
    return written


def task_by_id(domain: str, task_id: str, version: str | None) -> dict[str, Any]:
    """A shipped task by id (telecom: its full set, then its base file)."""
    from .tasks import load_tasks

    for split in ((None, "base") if domain == "telecom" else (None,)):
        found = [t for t in load_tasks(domain, split, None, version) if t["id"] == task_id]
        if found:
            return found[0]
    raise ConfigError(f"{domain} task {task_id!r} is not in tau2 data version {version or DEFAULT_VERSION}")
