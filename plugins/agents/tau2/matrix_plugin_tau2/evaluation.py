"""tau2's scoring as a plain function: no Ray, no LLM unless NL assertions are judged.

``evaluate(domain, task, messages, ...)`` scores one finished trajectory the way tau2 does:

- **DB**: the trajectory's tool calls (both sides, initial history included) are replayed
  on a fresh environment, the gold actions on another; the two agent databases and the two
  user databases must be equal. Recorded results need not match the replay's text (other
  implementations word and format them differently, e.g. tau2's telecom writes numbers as
  strings): each difference is a warning in ``info.replay_warnings``, never a zero.
- **ENV_ASSERTION**: the task's assertions run on the replayed environment.
- **COMMUNICATE**: each ``communicate_info`` string occurs in some assistant text
  (case-insensitive, commas removed from the text).
- **NL_ASSERTION**: an LLM judge grades each assertion against the transcript.
- **ACTION**: each gold action is matched by some tool call (name and compared arguments);
  the component is 1 when all are matched, or the mean (``Behaviour.action_reward``).

The reward is the product of the components in the task's ``reward_basis`` (default
``[DB, COMMUNICATE]``); a trajectory that did not end with a user or agent stop gets 0.

Messages are tau2-style dicts: ``role`` (assistant / user / tool), ``content``,
``tool_calls`` (``id``, ``name``, ``arguments``; the OpenAI ``function`` form is accepted),
and on tool messages ``tool_call_id`` (or ``id``) and ``requestor``.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Mapping, Sequence

from .env import Domain, Environment, get_domain
from .versions import Behaviour, behaviour_for

DB, ENV_ASSERTION, NL_ASSERTION, ACTION, COMMUNICATE = "DB", "ENV_ASSERTION", "NL_ASSERTION", "ACTION", "COMMUNICATE"
DEFAULT_REWARD_BASIS = (DB, COMMUNICATE)
SCORED_TERMINATIONS = ("agent_stop", "user_stop")


class ReplayMismatch(ValueError):
    """A replayed tool call returned something else than the trajectory recorded."""


# --- messages -------------------------------------------------------------------------


def normalize_messages(messages: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """tau2-style dicts from tau2 or OpenAI chat messages; tool results get their requestor."""
    out: list[dict[str, Any]] = []
    last_caller = "assistant"
    for m in messages:
        role = m.get("role")
        if role in ("assistant", "user"):
            calls = [_call(c) for c in m.get("tool_calls") or []]
            if calls:
                last_caller = role
            out.append({"role": role, "content": m.get("content"), "tool_calls": calls})
        elif role == "tool":
            out.append({
                "role": "tool",
                "id": m.get("tool_call_id") or m.get("id"),
                "content": m.get("content") if m.get("content") is not None else "",
                "requestor": m.get("requestor") or last_caller,
                "error": bool(m.get("error", False)),
            })
        # system messages carry no action
    return out


def _call(c: Mapping[str, Any]) -> dict[str, Any]:
    fn = c.get("function")
    name, args = (fn.get("name"), fn.get("arguments")) if isinstance(fn, Mapping) else (c.get("name"), c.get("arguments"))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError:
            pass  # malformed: kept as text, the environment answers it with an error
    return {"id": c.get("id"), "name": name or "", "arguments": {} if args is None else args}


def _calls_with_results(messages: Sequence[Mapping[str, Any]], warnings: list[str] | None = None) -> Iterable[tuple[str, dict, dict | None]]:
    """(requestor, call, its tool message or None) in trajectory order.

    tau2 pairs each call with the next message by id and refuses a trajectory where that
    fails; a scorer of anyone's trajectories pairs by id where it can and notes the rest.
    """
    i = 0
    while i < len(messages):
        m = messages[i]
        i += 1
        if m["role"] == "tool":
            if warnings is not None:
                warnings.append(f"message {i - 1}: a tool result that follows no tool call; ignored")
            continue
        for call in m.get("tool_calls") or []:
            result = messages[i] if i < len(messages) and messages[i]["role"] == "tool" else None
            if result is not None:
                i += 1
                if warnings is not None and result.get("id") not in (None, call.get("id")):
                    warnings.append(f"tool result {result.get('id')!r} answers call {call.get('id')!r}")
            elif warnings is not None:
                warnings.append(f"call {call.get('id')!r} ({call['name']}) has no tool result")
            yield m["role"], call, result


def _parsed(text: Any) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def _scalars_as_text(value: Any) -> Any:
    """Numbers and bools written one way (tau2's hand-built dicts hold them as strings): a view
    of a result in which two renderings of the same values are equal."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        return repr(float(value))
    if isinstance(value, str):
        try:
            return repr(float(value))
        except ValueError:
            return value
    if isinstance(value, dict):
        return {k: _scalars_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scalars_as_text(v) for v in value]
    return value


def result_difference(replayed: str, recorded: str) -> str | None:
    """None when equal as tau2 compares them (as JSON, else as text); "format" when they
    differ only in how numbers are written; "content" otherwise."""
    got, want = _parsed(replayed), _parsed(recorded)
    if got == want:
        return None
    if _scalars_as_text(got) == _scalars_as_text(want):
        return "format"
    if isinstance(got, str) and isinstance(want, str) and got.startswith("Error") and want.startswith("Error"):
        return "error text"  # both failed, worded differently (another implementation's messages)
    return "content"


def replay_messages(env: Environment, messages: Sequence[Mapping[str, Any]], strict: bool = False,
                    warnings: list[str] | None = None) -> None:
    """Re-runs the trajectory's tool calls in order, as tau2 does (reads too, then sync).

    The recorded results are compared with the replay's: ``strict`` raises
    :class:`ReplayMismatch` on a difference (tau2's own replay); otherwise each difference
    is a line in ``warnings`` and the state the replay reaches is what gets scored.
    """
    for n, (side, call, result) in enumerate(_calls_with_results(messages, warnings)):
        got = env.call_tool(side, call["name"], call["arguments"])
        if result is None:
            continue
        kind = result_difference(got.content, result["content"])
        if kind is None:
            continue
        text = f"replayed {side} call {call['name']}({_short(call['arguments'])}) returned {_short(got.content)}, the trajectory recorded {_short(result['content'])}"
        if strict:
            raise ReplayMismatch(text)
        if warnings is not None:
            warnings.append(f"tool result differs ({kind}): {text}")


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + "…"


def initial_environment(domain: Domain, task: Mapping[str, Any], behaviour: Behaviour | None = None) -> Environment:
    """A fresh environment with the task's initial state (data, actions, history's tool calls)."""
    env = domain.environment(behaviour=behaviour)
    initial = task.get("initial_state") or {}
    env.apply_initial_state(initial)
    replay_messages(env, normalize_messages(initial.get("message_history") or []))
    env.sync()
    return env


# --- components -------------------------------------------------------------------------


def _env_component(domain: Domain, task: Mapping[str, Any], messages: list[dict], criteria: Mapping[str, Any],
                   behaviour: Behaviour, warnings: list[str]) -> dict[str, Any]:
    actions, assertions = criteria.get("actions"), criteria.get("env_assertions")
    if actions is None and assertions is None:
        return {"db_check": {"db_match": True, "db_reward": 1.0}, "env_assertions": [], "info": {"note": "No expected actions or env assertions"},
                "env": None, "scored": False}
    initial = task.get("initial_state") or {}
    predicted = domain.environment(behaviour=behaviour)
    predicted.apply_initial_state(initial)
    replay_messages(predicted, messages, warnings=warnings)  # the trajectory includes the initial history
    predicted.sync()

    gold = initial_environment(domain, task, behaviour)
    failed = []
    for action in actions or []:
        side = action.get("requestor") or "assistant"
        # tau2 runs gold actions without the per-call sync (it matters for telecom's user DB)
        result = gold.call_tool(side, action["name"], action.get("arguments") or {}, sync=False)
        if result.error:
            failed.append({"action_id": action.get("action_id"), "tool_name": action["name"], "requestor": side, "error": result.content})
    agent_equal, user_equal = predicted.same_state(gold)
    match = agent_equal and user_equal
    db_check: dict[str, Any] = {"db_match": match, "db_reward": 1.0 if match else 0.0, "agent_db_match": agent_equal, "user_db_match": user_equal}
    # A gold action that fails changes nothing in tau2 either; noted, scored as tau2 scores it.
    info = {"gold_actions_failed": failed} if failed else None

    checks = []
    for a in assertions or []:
        value = predicted.run_function(a["env_type"], a["func_name"], a.get("arguments") or {})
        if not isinstance(value, bool):
            raise TypeError(f"assertion {a['func_name']} returned {type(value).__name__}, not bool")
        met = value == a.get("assert_value", True)
        checks.append({"env_type": a["env_type"], "func_name": a["func_name"], "arguments": a.get("arguments") or {},
                       "assert_value": a.get("assert_value", True), "met": met, "reward": 1.0 if met else 0.0})
    return {"db_check": db_check, "env_assertions": checks, "info": info, "env": predicted, "scored": True}


def action_matches(action: Mapping[str, Any], call: Mapping[str, Any]) -> bool:
    """tau2's match: same name, and equal values for ``compare_args`` (default: the keys the call gave)."""
    if action["name"] != call["name"] or not isinstance(call["arguments"], Mapping):
        return False
    keys = action.get("compare_args")
    if keys is None:
        keys = list(call["arguments"])
    if not keys:
        return True
    got = {k: v for k, v in call["arguments"].items() if k in keys}
    want = {k: v for k, v in (action.get("arguments") or {}).items() if k in keys}
    return got == want


def _action_component(domain: Domain, messages: list[dict], actions: Sequence[Mapping[str, Any]], behaviour: Behaviour) -> tuple[float, list[dict]]:
    calls = [c for m in messages if m["role"] in ("assistant", "user") for c in m.get("tool_calls") or []]
    kinds = {**(domain.user_tools.tool_kinds() if domain.user_tools else {}), **domain.assistant_tools.tool_kinds()}
    checks = []
    for action in actions:
        matched = any(action_matches(action, c) for c in calls)
        checks.append({"action_id": action.get("action_id"), "name": action["name"], "requestor": action.get("requestor") or "assistant",
                       "action_match": matched, "action_reward": 1.0 if matched else 0.0, "tool_type": kinds.get(action["name"])})
    if not checks:
        return 1.0, checks
    if behaviour.action_reward == "mean":
        return sum(c["action_reward"] for c in checks) / len(checks), checks
    return (1.0 if all(c["action_match"] for c in checks) else 0.0), checks


def _communicate_component(messages: list[dict], infos: Sequence[str]) -> tuple[float, list[dict]]:
    texts = [m["content"] for m in messages if m["role"] == "assistant" and m.get("content")]
    checks = []
    for info in infos:
        hit = next((t for t in texts if info.lower() in t.lower().replace(",", "")), None)
        checks.append({"info": info, "met": hit is not None,
                       "justification": f"Information '{info}' communicated in the message:\n '{hit}'" if hit is not None else f"Information '{info}' not communicated."})
    return (1.0 if all(c["met"] for c in checks) else 0.0), checks


# --- NL assertions judge ------------------------------------------------------------------

NL_SCHEMA = {
    "type": "object",
    "properties": {
        "results": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"expectedOutcome": {"type": "string"}, "reasoning": {"type": "string"}, "metExpectation": {"type": "boolean"}},
                "required": ["expectedOutcome", "reasoning", "metExpectation"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["results"],
    "additionalProperties": False,
}

_NL_SYSTEM = """You grade a customer-service conversation between an agent and a customer against a list of expected outcomes.
Judge each expected outcome on its own: is it satisfied by what the agent did and said in the conversation?
Answer with JSON only: {"results": [{"expectedOutcome": "<the outcome, repeated>", "reasoning": "<one short sentence>", "metExpectation": true or false}, ...]}, one entry per expected outcome, in the given order."""


def nl_judge_messages(messages: Sequence[Mapping[str, Any]], assertions: Sequence[str]) -> list[dict[str, str]]:
    """The chat request for the judge: the transcript and the outcomes to grade."""
    transcript = "\n".join(f"{m['role']}: {m.get('content')}" for m in normalize_messages(messages))
    outcomes = "\n".join(f"- {a}" for a in assertions)
    return [{"role": "system", "content": _NL_SYSTEM},
            {"role": "user", "content": f"Conversation:\n{transcript}\n\nExpected outcomes:\n{outcomes}"}]


def parse_nl_judgement(content: str | None, assertions: Sequence[str]) -> list[dict[str, Any]]:
    """The judge's verdicts, one per assertion in order; an unreadable or missing verdict is not met."""
    try:
        results = json.loads(content or "")["results"]
        if not isinstance(results, list):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        results = []
    checks = []
    for i, assertion in enumerate(assertions):
        r = results[i] if i < len(results) and isinstance(results[i], Mapping) else None
        if r is None:
            checks.append({"nl_assertion": assertion, "met": False, "justification": "the judge gave no readable verdict"})
        else:
            checks.append({"nl_assertion": assertion, "met": r.get("metExpectation") is True, "justification": str(r.get("reasoning") or "")})
    return checks


# --- the evaluation -------------------------------------------------------------------------


def evaluate(
    domain: Domain | str,
    task: Mapping[str, Any],
    messages: Sequence[Mapping[str, Any]],
    termination_reason: str = "user_stop",
    final_snapshot: Mapping[str, Any] | None = None,
    judge: Callable[[list[dict[str, str]]], str | None] | None = None,
    nl_checks: Sequence[Mapping[str, Any]] | None = None,
    data_version: str | None = None,
    behaviour: Behaviour | None = None,
) -> dict[str, Any]:
    """Scores one trajectory (the whole conversation, initial history included) as tau2 does.

    ``judge(chat_messages) -> reply text`` grades NL assertions when the task's basis needs
    them (or pass the verdicts as ``nl_checks``); without either the component is listed in
    ``unevaluated`` and left out of the product. ``final_snapshot`` (the live run's
    ``env.snapshot()``) is compared with the replay, as a consistency check in ``info``.
    ``behaviour`` defaults to the one of ``data_version`` (see :mod:`.versions`).

    Recorded tool results need not match the replay's text: each difference is a line in
    ``info.replay_warnings`` and the score is that of the state the replay reaches.
    """
    domain = get_domain(domain) if isinstance(domain, str) else domain
    behaviour = behaviour or behaviour_for(data_version)
    criteria = task.get("evaluation_criteria")
    if termination_reason not in SCORED_TERMINATIONS:
        return _info(0.0, None, note=f"Simulation terminated prematurely. Termination reason: {termination_reason}")
    if criteria is None:
        return _info(1.0, None, note="No evaluation criteria")
    basis = list(criteria.get("reward_basis") or DEFAULT_REWARD_BASIS)
    msgs = normalize_messages(messages)
    warnings: list[str] = []
    try:
        env_part = _env_component(domain, task, msgs, criteria, behaviour, warnings)
    except Exception as exc:  # an assertion that cannot run: this trajectory gets 0, the run goes on
        return _info(0.0, basis, note="evaluation failed: the environment could not be evaluated", error=f"{type(exc).__name__}: {exc}",
                     replay_warnings=warnings)
    action_reward, action_checks = _action_component(domain, msgs, criteria.get("actions") or [], behaviour)
    comm_reward, comm_checks = _communicate_component(msgs, criteria.get("communicate_info") or [])
    assertions = criteria.get("nl_assertions") or []
    if nl_checks is None and judge is not None and NL_ASSERTION in basis and assertions:
        nl_checks = parse_nl_judgement(judge(nl_judge_messages(msgs, assertions)), assertions)

    breakdown: dict[str, float] = {}
    unevaluated: list[str] = []
    db_check = env_part["db_check"]
    if env_part["scored"]:  # tau2 lists no env component when there was nothing to compare
        if DB in basis:
            breakdown[DB] = db_check["db_reward"]
        if ENV_ASSERTION in basis:
            breakdown[ENV_ASSERTION] = 1.0 if all(c["met"] for c in env_part["env_assertions"]) else 0.0
    if ACTION in basis:
        breakdown[ACTION] = action_reward
    if COMMUNICATE in basis:
        breakdown[COMMUNICATE] = comm_reward
    if NL_ASSERTION in basis:
        if not assertions:
            breakdown[NL_ASSERTION] = 1.0
        elif nl_checks is None:
            unevaluated.append(NL_ASSERTION)
        else:
            breakdown[NL_ASSERTION] = 1.0 if all(c["met"] for c in nl_checks) else 0.0
    reward = 1.0
    for value in breakdown.values():
        reward *= value

    info: dict[str, Any] = {"env": env_part["info"]}
    if warnings:
        info["replay_warnings"] = warnings
    if final_snapshot is not None and env_part["env"] is not None:
        live = domain.environment(final_snapshot, behaviour)
        agent_same, user_same = live.same_state(env_part["env"])
        info["live_state_matches_replay"] = agent_same and user_same
    out = _info(reward, basis)
    out.update(reward_breakdown=breakdown, db_check=db_check, env_assertions=env_part["env_assertions"], action_checks=action_checks,
               communicate_checks=comm_checks, nl_assertions=list(nl_checks) if nl_checks is not None else None, unevaluated=unevaluated, info=info)
    return out


def _info(reward: float, basis: list[str] | None, **info: Any) -> dict[str, Any]:
    return {"reward": reward, "reward_basis": basis, "reward_breakdown": {}, "db_check": None, "env_assertions": [], "action_checks": [],
            "communicate_checks": [], "nl_assertions": None, "unevaluated": [], "info": info}


def gold_trajectory(task: Mapping[str, Any], domain: Domain | str | None = None, behaviour: Behaviour | None = None) -> list[dict[str, Any]]:
    """The task's gold actions as a trajectory: the initial history, then each action as a
    tool call of its requestor followed by the result a fresh environment gives it."""
    domain = get_domain(domain or task.get("domain") or "mock") if not isinstance(domain, Domain) else domain
    initial = (task.get("initial_state") or {}).get("message_history") or []
    env = initial_environment(domain, task, behaviour)
    messages = normalize_messages(initial)
    for i, action in enumerate((task.get("evaluation_criteria") or {}).get("actions") or []):
        side = action.get("requestor") or "assistant"
        call = {"id": f"gold_{i}", "name": action["name"], "arguments": dict(action.get("arguments") or {})}
        result = env.call_tool(side, call["name"], call["arguments"])
        messages.append({"role": side, "content": None, "tool_calls": [call]})
        messages.append({"role": "tool", "id": call["id"], "content": result.content, "requestor": side, "error": result.error})
    return messages


__all__ = ["ACTION", "COMMUNICATE", "DB", "ENV_ASSERTION", "NL_ASSERTION", "NL_SCHEMA", "ReplayMismatch", "action_matches",
           "evaluate", "gold_trajectory", "initial_environment", "nl_judge_messages", "normalize_messages", "parse_nl_judgement",
           "replay_messages"]
