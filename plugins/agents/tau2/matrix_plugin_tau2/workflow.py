"""The tau2 workflow: assistant <-> user simulator, tools run by the environment, then scored.

Flow per task, as tau2's half-duplex orchestrator: the assistant greets (or the task's
``message_history`` is the opening), then each message goes to its addressee: text from the
assistant to the user simulator and back, tool calls of either side to the environment,
whose results go back to the caller. The conversation ends on a user stop token
(``###STOP###``, ``###TRANSFER###``, ``###OUT-OF-SCOPE###``), ``###STOP###`` from the
assistant, ``max_steps`` messages or ``max_errors`` failed tool calls; then the evaluator
scores it and the sink writes it.

Everything a task needs travels in the orchestrator: the task (payload), the messages
(history) and the environment's delta (``state["snapshot"]``, never a database copy).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from pydantic import BaseModel, Field

from matrix_core import Agent, Orchestrator, RunMetrics, SamplingOptions, ToolCall, Turn, task_id_for

from .env import DATA_DIR, get_domain
from .evaluation import NL_ASSERTION, NL_SCHEMA, evaluate, initial_environment, nl_judge_messages, normalize_messages, parse_nl_judgement
from .tasks import scenario_text
from .versions import Behaviour, behaviour_for, get_version

ASSISTANT, USER, ENVIRONMENT, EVALUATOR = "assistant", "user", "environment", "evaluator"
GREETING = "Hi! How can I help you today?"
AGENT_STOP = "###STOP###"
USER_STOP_TOKENS = ("###STOP###", "###TRANSFER###", "###OUT-OF-SCOPE###")

AGENT_INSTRUCTION = """You are a customer service agent. Help the user by following the <policy> below.
Each turn, do exactly one of these: send a message to the user, or make tool calls. Never both at once.
Be helpful and always follow the policy. Tool call arguments must be valid JSON."""


@functools.lru_cache(maxsize=None)
def assistant_system_prompt(domain_name: str) -> str:
    """tau2's agent system prompt shape: instructions, then the domain policy."""
    policy = get_domain(domain_name).policy()
    return f"<instructions>\n{AGENT_INSTRUCTION}\n</instructions>\n<policy>\n{policy}\n</policy>"


@functools.lru_cache(maxsize=None)
def _guidelines(with_tools: bool) -> str:
    name = "simulation_guidelines_tools.md" if with_tools else "simulation_guidelines.md"
    return (DATA_DIR / "user_simulator" / name).read_text(encoding="utf-8").replace("<PERSONA_GUIDELINES>", "")


def user_system_prompt(domain_name: str, task: Mapping[str, Any]) -> str:
    """tau2's user simulator prompt: the global guidelines, then the task's scenario."""
    guidelines = _guidelines(get_domain(domain_name).user_tools is not None)
    return f"{guidelines}\n\n<scenario>\n{scenario_text(task.get('user_scenario') or {})}\n</scenario>"


def assistant_tools(domain_name: str) -> list[dict[str, Any]]:
    return get_domain(domain_name).assistant_tools.schemas()


def user_tools(domain_name: str) -> list[dict[str, Any]]:
    kit = get_domain(domain_name).user_tools
    return kit.schemas() if kit is not None else []


# --- turns <-> messages ----------------------------------------------------------------


def _requestor(turn: Turn) -> str:
    return turn.meta.get("requestor", ASSISTANT)


def _openai_calls(calls: Sequence[ToolCall]) -> list[dict[str, Any]]:
    return [{"id": c.id, "type": "function",
             "function": {"name": c.name, "arguments": c.arguments if isinstance(c.arguments, str) else json.dumps(c.arguments)}}
            for c in calls]


def assistant_messages(system: str, turns: Sequence[Turn]) -> list[dict[str, Any]]:
    """The assistant's view in OpenAI chat format: the user's own tool use is invisible to it."""
    out: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for t in turns:
        if t.role == ASSISTANT:
            msg: dict[str, Any] = {"role": "assistant", "content": t.content}
            if t.tool_calls:
                msg["tool_calls"] = _openai_calls(t.tool_calls)
            out.append(msg)
        elif t.role == USER and not t.tool_calls:
            out.append({"role": "user", "content": t.content or ""})
        elif t.role == "tool" and _requestor(t) == ASSISTANT:
            out.append({"role": "tool", "tool_call_id": t.tool_call_id, "content": t.content or ""})
    return out


def user_messages(system: str, turns: Sequence[Turn]) -> list[dict[str, Any]]:
    """The user simulator's view, roles flipped: it speaks as ``assistant``, the agent as ``user``."""
    out: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for t in turns:
        if t.role == ASSISTANT and not t.tool_calls:
            out.append({"role": "user", "content": t.content or ""})
        elif t.role == USER:
            msg: dict[str, Any] = {"role": "assistant", "content": t.content}
            if t.tool_calls:
                msg["tool_calls"] = _openai_calls(t.tool_calls)
            out.append(msg)
        elif t.role == "tool" and _requestor(t) == USER:
            out.append({"role": "tool", "tool_call_id": t.tool_call_id, "content": t.content or ""})
    return out


def trajectory_messages(turns: Sequence[Turn]) -> list[dict[str, Any]]:
    """The whole conversation as tau2-style messages (both sides' tool use), for scoring."""
    out = []
    for t in turns:
        if t.role in (ASSISTANT, USER):
            out.append({"role": t.role, "content": t.content, "tool_calls": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in t.tool_calls]})
        elif t.role == "tool":
            out.append({"role": "tool", "id": t.tool_call_id, "content": t.content, "requestor": _requestor(t), "error": bool(t.meta.get("error"))})
    return out


def _history_turns(message_history: Sequence[Mapping[str, Any]]) -> list[Turn]:
    turns = []
    for m in normalize_messages(message_history):
        if m["role"] == "tool":
            turns.append(Turn(role="tool", content=m["content"], tool_call_id=m["id"], meta={"initial": True, "requestor": m["requestor"]}))
        else:
            calls = [ToolCall(id=str(c["id"] or f"init_{i}"), name=c["name"], arguments=c["arguments"]) for i, c in enumerate(m["tool_calls"])]
            turns.append(Turn(role=m["role"], content=m["content"], tool_calls=calls, meta={"initial": True}))
    return turns


# --- the orchestrator ----------------------------------------------------------------------


class Tau2Options(BaseModel):
    """The workflow's own per-conversation limits, checked when the run starts (not once per row)."""

    max_steps: int = Field(100, ge=1, description="messages per conversation (tool results count), as tau2 counts steps")
    max_errors: int = Field(10, ge=1, description="failed tool calls before the conversation ends")


class Tau2Orchestrator(Orchestrator):
    """One tau2 task. ``state``: domain, counters, routing (``to``/``frm``), the environment
    snapshot, the termination reason and, at the end, the reward and its components."""

    @classmethod
    def from_row(cls, row: Mapping[str, Any], *, row_key: str, trial: int, config: Mapping[str, Any]):
        task = row.get("task") if isinstance(row.get("task"), Mapping) else row
        if not isinstance(task.get("id"), (str, int)) or not isinstance(task.get("user_scenario"), Mapping):
            raise ValueError("row is not a tau2 task (needs 'id' and 'user_scenario')")
        domain = str(row.get("domain") or (config.get("dataset") or {}).get("domain") or config.get("domain") or "mock")
        get_domain(domain)  # an unknown domain fails this row now
        version = get_version(config.get("data_version")).name
        behaviour = behaviour_for(version, config.get("behaviour") or {})
        max_steps, max_errors = int(config.get("max_steps", 100)), int(config.get("max_errors", 10))
        if max_steps < 1 or max_errors < 1:
            raise ValueError(f"max_steps={max_steps}, max_errors={max_errors}: both must be at least 1")
        orch = cls(
            task_id=task_id_for(row_key, trial), row_key=row_key, trial=trial,
            payload={"domain": domain, "task": dict(task)},
            state={"domain": domain, "tau2_task_id": str(task["id"]), "data_version": version, "behaviour": dataclasses.asdict(behaviour),
                   "max_steps": max_steps, "max_errors": max_errors,
                   "tau2_steps": 0, "errors": 0, "to": None, "frm": None, "done": False, "termination_reason": None,
                   "snapshot": None, "evaluated": False, "reward": None, "reward_info": None},
        )
        orch._open(task)
        return orch

    def _open(self, task: Mapping[str, Any]) -> None:
        """The first turns, as tau2 initializes: the given history, or the assistant's greeting."""
        history = _history_turns((task.get("initial_state") or {}).get("message_history") or [])
        if not history:
            self.add_turn(role=ASSISTANT, agent=ASSISTANT, content=GREETING, meta={"greeting": True})
            self.state.update(frm=ASSISTANT, to=USER)
            return
        for turn in history:
            self.add_turn(turn)
        last = history[-1]
        if last.role == "tool":
            self.state.update(frm=ENVIRONMENT, to=_requestor(last))
        else:
            self.state.update(frm=last.role, to=ENVIRONMENT if last.tool_calls else (USER if last.role == ASSISTANT else ASSISTANT))
            if not last.tool_calls and last.role == ASSISTANT and AGENT_STOP in (last.content or ""):
                self._finish("agent_stop")
            elif not last.tool_calls and last.role == USER and _user_stopped(last.content):
                self._finish("user_stop")

    def next_role(self) -> str | None:
        if self.state["evaluated"]:
            return None
        if self.state["done"]:
            return EVALUATOR
        return ENVIRONMENT if self.state["to"] == ENVIRONMENT else self.state["to"]

    # --- transitions (called by the agents; tests drive them directly) -------------------
    def record_message(self, turn: Turn, side: str) -> None:
        """A message of the assistant or the user: route it, and stop where tau2 stops."""
        self.add_turn(turn)
        self.state["frm"] = side
        text = turn.content or ""
        if turn.tool_calls:
            self.state["to"] = ENVIRONMENT
        else:
            self.state["to"] = USER if side == ASSISTANT else ASSISTANT
            if side == ASSISTANT and AGENT_STOP in text:
                self._finish("agent_stop")
            elif side == USER and _user_stopped(text):
                self._finish("user_stop")
        self._stepped()

    def record_tool_results(self, results: Sequence[Turn]) -> None:
        """The environment's answers to the pending calls; they go back to the caller."""
        for turn in results:
            self.add_turn(turn)
        self.state["errors"] += sum(bool(t.meta.get("error")) for t in results)
        self.state["to"], self.state["frm"] = self.state["frm"], ENVIRONMENT
        self._stepped()

    def _stepped(self) -> None:
        s = self.state
        s["tau2_steps"] += 1
        if s["to"] == ENVIRONMENT:
            return  # tau2 never ends a task with tool calls unanswered
        # Checked after every step, stops included, in tau2's order (errors win).
        if s["tau2_steps"] >= s["max_steps"]:
            self._finish("max_steps")
        if s["errors"] >= s["max_errors"]:
            self._finish("too_many_errors")

    def _finish(self, reason: str) -> None:
        self.state["done"] = True
        self.state["termination_reason"] = reason

    def pending_calls(self, turns: Sequence[Turn]) -> tuple[str, list[ToolCall]]:
        last = next((t for t in reversed(turns) if t.role in (ASSISTANT, USER)), None)
        return self.state["frm"], list(last.tool_calls) if last is not None else []

    async def to_record(self) -> dict[str, Any]:
        record = await super().to_record()
        domain = self.state.get("domain") or "mock"
        turns = await self.conversation()
        usage: dict[str, dict[str, int]] = {}
        for t in turns:
            if t.usage is not None:
                u = usage.setdefault(t.agent or t.role, {"prompt_tokens": 0, "completion_tokens": 0})
                u["prompt_tokens"] += t.usage.prompt_tokens
                u["completion_tokens"] += t.usage.completion_tokens
        for who, u in (self.state.get("judge_usage") or {}).items():
            usage[who] = dict(u)
        # Written once, at the top level of the record.
        record["state"] = {k: v for k, v in record["state"].items() if k not in ("reward", "reward_info", "termination_reason")}
        record.update(
            domain=domain,
            tau2_task_id=self.state.get("tau2_task_id"),
            data_version=self.state.get("data_version"),
            messages=assistant_messages(assistant_system_prompt(domain), turns),
            tools=assistant_tools(domain),
            reward=self.state.get("reward"),
            reward_info=self.state.get("reward_info"),
            termination_reason=self.state.get("termination_reason"),
            usage={**usage, "total_tokens": sum(u["prompt_tokens"] + u["completion_tokens"] for u in usage.values())},
        )
        return record


def _user_stopped(text: str | None) -> bool:
    return any(token in (text or "") for token in USER_STOP_TOKENS)


# --- agents ---------------------------------------------------------------------------------


def _unique_ids(turn: Turn, turns: Sequence[Turn], prefix: str) -> None:
    """Servers reuse ids such as ``call_0`` every turn; results must name their own call."""
    seen = {c.id for t in turns for c in t.tool_calls}
    for i, call in enumerate(turn.tool_calls):
        if not call.id or call.id in seen:
            call.id = f"{prefix}_{len(turns)}_{i}"
        seen.add(call.id)


def _repeats_last_call(calls: Sequence[Any], turns: Sequence[Turn], side: str = ASSISTANT) -> bool:
    """True when ``calls`` are ``side``'s previous calls again, just after their results."""
    if not calls or not turns or turns[-1].role != "tool" or _requestor(turns[-1]) != side:
        return False
    previous = next((t for t in reversed(turns) if t.role == side and t.tool_calls), None)
    if previous is None:
        return False
    key = lambda cs: [(c.name, json.dumps(c.arguments, sort_keys=True, default=str)) for c in cs]  # noqa: E731
    return key(calls) == key(previous.tool_calls)


class _RepeatedCall:
    """``repeated_call: reply``: a call identical to the previous one, made right after its result,
    is asked again as a text reply (small models loop on one call and never answer)."""

    async def ask(self, side: str, turns: Sequence[Turn], messages: list, tools: list | None, orch, params: dict):
        result = await self.llm.chat(messages, tools=tools, sticky_key=orch.task_id, **params)
        if tools and self.options.repeated_call == "reply" and _repeats_last_call(result.tool_calls, turns, side):
            result = await self.llm.chat(messages, tools=tools, tool_choice="none", sticky_key=orch.task_id, **params)
        return result


class Tau2Assistant(_RepeatedCall, Agent):
    """The customer-service agent: the domain policy as system prompt, the domain's tools."""

    uses_llm = True

    class Options(SamplingOptions):
        repeated_call: Literal["allow", "reply"] = Field(
            "allow", description="reply: a call identical to the previous one, made right after its result, is asked "
                                 "again as a text reply (small models loop on one call)")

    async def respond(self, orch: Tau2Orchestrator, domain: str, turns: Sequence[Turn]) -> Turn:
        messages = assistant_messages(assistant_system_prompt(domain), turns)
        result = await self.ask(ASSISTANT, turns, messages, assistant_tools(domain), orch, self.options.sampling())
        return result.to_turn(agent=self.context.role)

    async def step(self, orch: Tau2Orchestrator) -> None:
        turns = await orch.conversation()
        turn = await self.respond(orch, orch.state["domain"], turns)
        turn.role = ASSISTANT
        _unique_ids(turn, turns, "a")
        orch.record_message(turn, ASSISTANT)


class Tau2User(_RepeatedCall, Agent):
    """The user simulator: tau2's guidelines and the task's scenario; user tools where the
    domain has them (``offer_tools: named``: only those the scenario names, for models that
    call whatever tool they are offered). ``stop_after: N`` sends ``###STOP###`` instead of an
    (N+1)-th message (for simulated or tiny LLMs whose replies never stop on their own)."""

    uses_llm = True

    class Options(SamplingOptions):
        stop_after: int | None = Field(None, ge=0, description="send ###STOP### instead of the (N+1)-th message (simulated LLMs)")
        offer_tools: Literal["all", "named"] = Field("all", description="user tools offered: all, or those the scenario names (small models)")
        repeated_call: Literal["allow", "reply"] = Field(
            "allow", description="reply: a call identical to the previous one, made right after its result, is asked "
                                 "again as a text reply (small models loop on one call)")

    async def respond(self, orch: Tau2Orchestrator, domain: str, task: Mapping[str, Any], turns: Sequence[Turn]) -> Turn:
        messages = user_messages(user_system_prompt(domain, task), turns)
        tools = user_tools(domain)
        if self.options.offer_tools == "named":
            scenario = scenario_text(task.get("user_scenario") or {})
            tools = [t for t in tools if t["function"]["name"] in scenario]
        result = await self.ask(USER, turns, messages, tools or None, orch, self.options.sampling())
        return result.to_turn(agent=self.context.role, role=USER)

    async def step(self, orch: Tau2Orchestrator) -> None:
        turns = await orch.conversation()
        limit = self.options.stop_after
        spoken = sum(t.role == USER and not t.meta.get("initial") for t in turns)
        if limit is not None and spoken >= limit:
            turn = Turn(role=USER, agent=self.context.role, content=USER_STOP_TOKENS[0], meta={"scripted_stop": True})
        else:
            turn = await self.respond(orch, orch.state["domain"], (await orch.get_payload())["task"], turns)
            turn.role = USER
            _unique_ids(turn, turns, "u")
        orch.record_message(turn, USER)


def _behaviour(orch: Tau2Orchestrator) -> Behaviour:
    return Behaviour(**orch.state["behaviour"]) if orch.state.get("behaviour") else behaviour_for(orch.state.get("data_version"))


class Tau2Environment(Agent):
    """Runs the pending tool calls of either side on the task's environment (rebuilt from its
    snapshot), appends one tool message per call and stores the new snapshot."""

    async def step(self, orch: Tau2Orchestrator) -> None:
        domain = get_domain(orch.state["domain"])
        behaviour = _behaviour(orch)
        if orch.state["snapshot"] is None:
            env = initial_environment(domain, (await orch.get_payload())["task"], behaviour)
        else:
            env = domain.environment(orch.state["snapshot"], behaviour)
        side, calls = orch.pending_calls(await orch.conversation())
        results = []
        for call in calls:
            result = env.call_tool(side, call.name, call.arguments)
            results.append(Turn(role="tool", agent=self.context.role, content=result.content, tool_call_id=call.id,
                                meta={"requestor": side, "error": result.error, "tool": call.name}))
        orch.state["snapshot"] = env.snapshot()
        orch.record_tool_results(results)


class Tau2Evaluator(Agent):
    """Scores the finished conversation (see :mod:`.evaluation`); NL assertions are judged by
    the run's LLM with a JSON schema when ``nl_judge`` is on."""

    uses_llm = True

    class Options(SamplingOptions):
        nl_judge: bool = Field(True, description="judge NL assertions with the run's LLM (false: listed as unevaluated)")
        temperature: float | None = Field(0.0, ge=0, description="judge sampling temperature")
        max_tokens: int | None = Field(512, ge=1, description="longest judgement, in tokens")

    async def judge(self, orch: Tau2Orchestrator, messages: list[dict[str, Any]], assertions: Sequence[str]) -> list[dict[str, Any]]:
        result = await self.llm.chat(nl_judge_messages(messages, assertions), json_schema=NL_SCHEMA, sticky_key=orch.task_id,
                                     **self.options.sampling())
        orch.state["judge_usage"] = {self.context.role: {"prompt_tokens": result.usage.prompt_tokens, "completion_tokens": result.usage.completion_tokens,
                                                         "llm": {"resource": result.resource, "model": result.model}}}
        return parse_nl_judgement(result.content, assertions)

    async def step(self, orch: Tau2Orchestrator) -> None:
        task = (await orch.get_payload())["task"]
        messages = trajectory_messages(await orch.conversation())
        reason = orch.state["termination_reason"]
        criteria = task.get("evaluation_criteria") or {}
        nl_checks = None
        wants_nl = NL_ASSERTION in (criteria.get("reward_basis") or []) and criteria.get("nl_assertions")
        if wants_nl and reason in ("agent_stop", "user_stop") and self.options.nl_judge:
            nl_checks = await self.judge(orch, messages, criteria["nl_assertions"])
        info = evaluate(orch.state["domain"], task, messages, termination_reason=reason, final_snapshot=orch.state["snapshot"], nl_checks=nl_checks,
                        behaviour=_behaviour(orch))
        orch.state.update(evaluated=True, reward=info["reward"], reward_info=info)


# --- metrics --------------------------------------------------------------------------------


def is_success(reward: float | None) -> bool:
    return reward is not None and reward >= 1.0 - 1e-6


def pass_hat_k(rewards_by_task: Mapping[str, Sequence[float | None]], k: int) -> float | None:
    """tau2's pass^k: over tasks with at least k trials, the mean of C(successes, k) / C(trials, k)."""
    scores = []
    for rewards in rewards_by_task.values():
        n = len(rewards)
        if n >= k:
            scores.append(math.comb(sum(is_success(r) for r in rewards), k) / math.comb(n, k))
    return sum(scores) / len(scores) if scores else None


TAU2_RECORD_KEYS = ("task_id", "trial", "status", "domain", "tau2_task_id", "data_version", "history", "termination_reason", "reward_info")


class Tau2Metrics(RunMetrics):
    """Average reward per domain, pass^k over the run's trials, termination reasons, tokens."""

    def __init__(self, config: Mapping[str, Any]):
        self.trials = int((config.get("run") or {}).get("trials", 1))
        # output.tau2_results: also write the run in tau2's results format (resolved here, in the driver's cwd)
        target = (config.get("output") or {}).get("tau2_results")
        self.tau2_results = str(Path(target).resolve()) if target else None
        self.tau2_config = {k: config.get(k) for k in ("agents", "llm", "run", "max_steps", "max_errors")} if target else None
        self.tau2_records: list[dict[str, Any]] = []
        self.rewards: dict[str, dict[str, list[float | None]]] = defaultdict(lambda: defaultdict(list))
        self.terminations: Counter[str] = Counter()
        self.failed = self.tokens = self.scored = 0

    def add(self, record: Mapping[str, Any]) -> None:
        if self.tau2_results and record.get("status") == "done":
            self.tau2_records.append({k: record.get(k) for k in TAU2_RECORD_KEYS})
        if record.get("status") != "done" or record.get("reward") is None:
            self.failed += 1
            return
        self.scored += 1
        self.rewards[record.get("domain") or "?"][str(record.get("row_key"))].append(float(record["reward"]))
        self.terminations[record.get("termination_reason") or "?"] += 1
        self.tokens += int((record.get("usage") or {}).get("total_tokens") or 0)

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {"trajectories": self.scored, "failed": self.failed}
        everything = [r for tasks in self.rewards.values() for rs in tasks.values() for r in rs]
        out["avg_reward"] = sum(everything) / len(everything) if everything else 0.0
        for domain, tasks in sorted(self.rewards.items()):
            rs = [r for v in tasks.values() for r in v]
            out[f"avg_reward[{domain}]"] = sum(rs) / len(rs)
            if self.trials > 1:
                for k in range(1, self.trials + 1):
                    value = pass_hat_k(tasks, k)
                    if value is not None:
                        out[f"pass^{k}[{domain}]"] = value
        for reason, n in sorted(self.terminations.items()):
            out[f"termination[{reason}]"] = n
        out["tokens_per_trajectory"] = self.tokens / max(self.scored, 1)
        if self.tau2_results and self.tau2_records:
            from .tau2_format import export_records

            for domain, path in export_records(self.tau2_records, self.tau2_results, self.tau2_config).items():
                out[f"tau2_results[{domain}]"] = str(path)
        return out

    def plots(self) -> list[tuple[str, Any]]:
        from matrix_core import report_figure

        domains = sorted(self.rewards)
        fig, ax = report_figure("Average reward per domain")
        ax.bar(domains, [_mean([r for v in self.rewards[d].values() for r in v]) for d in domains], color="#4c72b0")
        ax.set_ylim(0, 1)
        ax.set_ylabel("reward")
        plots = [("tau2 reward per domain", fig)]
        fig, ax = report_figure("pass^k per domain")
        for d in domains:
            ks = [k for k in range(1, self.trials + 1) if pass_hat_k(self.rewards[d], k) is not None]
            ax.plot(ks, [pass_hat_k(self.rewards[d], k) for k in ks], marker="o", label=d)
        ax.set_xlabel("k (trials that must all succeed)")
        ax.set_ylim(-0.05, 1.05)
        if domains:
            ax.legend()
        plots.append(("tau2 pass^k", fig))
        fig, ax = report_figure("Termination reasons")
        reasons = sorted(self.terminations)
        ax.barh(reasons, [self.terminations[r] for r in reasons], color="#8172b2")
        ax.set_xlabel("trajectories")
        return plots + [("tau2 termination reasons", fig)]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
