"""Generation steps over a dataset: one role per step, run in the order of ``steps``.

Each step is a role of agent type ``generate.step`` (``agents.<step>``), so it has its own
replicas, in-flight cap and, where the run declares several, its own LLM resource. Its
prompt comes from a column (``text_key``), a chat ``messages`` column (``messages_key``) or
a template over the row's columns and earlier steps' outputs (``prompt``). A step's options
fall back to the top-level keys of the same name (``text_key``, ``messages_key``,
``system_prompt``, ``params``, ``params_key``).

The output record is the input row's columns, plus one column per step with its output:
the text, the parsed JSON (``json_schema``), or a list of either when ``n`` > 1. Everything
else the model returned (every choice, logprobs, reasoning, finish reason, model, whether
the answer came from the cache) is in the step's turn in ``history``; outputs that do not
match the schema are ``null`` with the reason in ``state.invalid``.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import jsonschema

from matrix_core import Agent, ConfigError, LLMResult, Orchestrator, RunMetrics, task_id_for

from .templates import Placeholder, RenderError, Template

STEP_TYPE = "generate.step"
INHERITED = ("text_key", "messages_key", "system_prompt", "params_key")
STEP_KEYS = {"prompt", "n", "json_schema", "params", *INHERITED}
# Keys the core or other plugins may put in a role's section (per-role LLM resources).
FOREIGN_KEYS = {"llm"}
# Per-row overrides may change sampling, never what the request is.
FIXED_PARAMS = {"messages", "tools", "tool_choice", "response_format", "stream"}
RESERVED = set(Orchestrator.model_fields) | {"row"}


class StepInputError(ValueError):
    """A row that this step cannot build a request from (its task fails with the reason)."""


@dataclass
class Step:
    """One step's resolved options, built the same way by the agent and by the check."""

    name: str
    prompt: Template | None
    text_key: str | None
    messages_key: str | None
    system: Template | None
    params: dict[str, Any]
    params_key: str | None
    schema: Mapping[str, Any] | None
    validator: Any = None

    @classmethod
    def resolve(cls, name: str, section: Mapping[str, Any], top: Mapping[str, Any]) -> "Step":
        where = f"agents.{name}"
        unknown = set(section) - STEP_KEYS - FOREIGN_KEYS
        if unknown:
            raise ConfigError(f"{where}.{min(unknown)} is not a generate.step option; known: {', '.join(sorted(STEP_KEYS))}")
        opt = {k: top.get(k) for k in INHERITED} | {k: v for k, v in section.items() if v is not None}
        params = {**dict(top.get("params") or {}), **dict(section.get("params") or {})}
        if section.get("n") is not None or top.get("n") is not None:
            params["n"] = section["n"] if section.get("n") is not None else top["n"]
        if "n" in params and (not isinstance(params["n"], int) or params["n"] < 1):
            raise ConfigError(f"{where}.n must be an integer >= 1, got {params['n']!r}")
        bad = FIXED_PARAMS & set(params)
        if bad:
            raise ConfigError(f"{where}.params.{min(bad)} cannot be set as a sampling param")
        prompt = Template(str(opt["prompt"]), f"{where}.prompt") if opt.get("prompt") is not None else None
        if prompt is None and not opt.get("messages_key") and not opt.get("text_key"):
            raise ConfigError(f"{where}: no prompt; set text_key=COLUMN, messages_key=COLUMN or {where}.prompt=TEMPLATE")
        system = Template(str(opt["system_prompt"]), f"{where}.system_prompt") if opt.get("system_prompt") else None
        schema, validator = _schema(section.get("json_schema"), f"{where}.json_schema")
        return cls(name, prompt, opt.get("text_key"), opt.get("messages_key"), system, params, opt.get("params_key"), schema, validator)

    # --- one row ----------------------------------------------------------------------
    def messages(self, row: Mapping[str, Any], outputs: Mapping[str, Any]) -> list[dict[str, Any]]:
        variables = {**row, **outputs, "row": row}
        if self.prompt is not None:
            messages = [{"role": "user", "content": self.prompt.render(variables)}]
        elif self.messages_key:
            messages = _chat(row, self.messages_key)
        else:
            text = _column(row, self.text_key)
            if not isinstance(text, str):
                raise StepInputError(f"column {self.text_key!r} holds {type(text).__name__}, not text")
            messages = [{"role": "user", "content": text}]
        if self.system is not None and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": self.system.render(variables)})
        return messages

    def row_params(self, row: Mapping[str, Any]) -> dict[str, Any]:
        if not self.params_key:
            return self.params
        value = _column(row, self.params_key)
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else None
            except ValueError:
                raise StepInputError(f"column {self.params_key!r} is not a JSON object of sampling params") from None
        if value is None:
            return self.params
        if not isinstance(value, Mapping):
            raise StepInputError(f"column {self.params_key!r} holds {type(value).__name__}, not an object of sampling params")
        bad = FIXED_PARAMS & set(value)
        if bad:
            raise StepInputError(f"column {self.params_key!r} sets {min(bad)!r}, which is not a sampling param")
        return {**self.params, **value}

    def output(self, result: LLMResult) -> tuple[Any, str | None]:
        """The step's output column and why it is invalid (None when it is not)."""
        texts = [c.content for c in result.choices] or [result.content]
        if self.validator is None:
            return (texts[0] if len(texts) == 1 else texts), None
        values, reasons = [], []
        for i, text in enumerate(texts):
            value, reason = self._parse(text)
            values.append(value)
            if reason:
                reasons.append(reason if len(texts) == 1 else f"choice {i}: {reason}")
        return (values[0] if len(texts) == 1 else values), ("; ".join(reasons) or None)

    def _parse(self, text: str | None) -> tuple[Any, str | None]:
        try:
            value = json.loads(text or "")
        except ValueError as exc:
            return None, f"not JSON ({exc})"
        error = jsonschema.exceptions.best_match(self.validator.iter_errors(value))
        if error is not None:
            at = "/".join(str(p) for p in error.absolute_path)
            return None, f"does not match the schema{' at ' + at if at else ''}: {error.message}"
        return value, None


def _schema(value: Any, where: str) -> tuple[Mapping[str, Any] | None, Any]:
    if value is None:
        return None, None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ConfigError(f"{where} is not JSON: {exc}") from None
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a JSON Schema object, got {type(value).__name__}")
    cls = jsonschema.validators.validator_for(value)
    try:
        cls.check_schema(value)
    except jsonschema.exceptions.SchemaError as exc:
        at = "/".join(str(p) for p in exc.absolute_path)
        raise ConfigError(f"{where} is not a valid JSON Schema{' at ' + at if at else ''}: {exc.message}") from None
    return dict(value), cls(value)


def _column(row: Mapping[str, Any], key: str) -> Any:
    if key not in row:
        raise StepInputError(f"row has no column {key!r} (columns: {', '.join(map(str, row)) or 'none'})")
    return row[key]


def _chat(row: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    value = _column(row, key)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise StepInputError(f"column {key!r} is not a JSON list of chat messages") from None
    if not isinstance(value, list) or not value or not all(isinstance(m, Mapping) and "role" in m and "content" in m for m in value):
        raise StepInputError(f"column {key!r} must be a non-empty list of {{role, content}} messages")
    return [dict(m) for m in value]


# --- the task -------------------------------------------------------------------------
class GenerateTask(Orchestrator):
    """One row; ``state.outputs`` fills step by step, ``state.invalid`` says which failed the schema."""

    @classmethod
    def from_row(cls, row: Mapping[str, Any], *, row_key: str, trial: int, config: Mapping[str, Any]):
        return cls(
            task_id=task_id_for(row_key, trial), row_key=row_key, trial=trial, payload=dict(row),
            state={"steps": steps_of(config), "outputs": {}, "invalid": {}},
        )

    def next_role(self) -> str | None:
        outputs = self.state["outputs"]
        return next((s for s in self.state["steps"] if s not in outputs), None)

    async def to_record(self) -> dict[str, Any]:
        """The standard record, plus the row's columns and each step's output at the top: a dataset."""
        record = await super().to_record()
        if isinstance(record.get("payload"), Mapping):
            for key, value in record["payload"].items():
                record.setdefault(str(key), value)
        record.update(self.state.get("outputs") or {})
        return record


class GenerateStep(Agent):
    """One generation step: build the messages for the row, call the LLM, keep the output."""

    uses_llm = True

    def __init__(self, context):
        super().__init__(context)
        self.step_cfg = Step.resolve(context.role, self.config, context.run_config or {})

    async def step(self, orch: GenerateTask) -> None:
        step = self.step_cfg
        row = await orch.get_payload()
        try:
            messages = step.messages(row, orch.state["outputs"])
            params = step.row_params(row)
        except (RenderError, StepInputError) as exc:
            raise StepInputError(f"step {step.name}: {exc}") from None
        result = await self.llm.chat(messages, json_schema=step.schema, sticky_key=orch.task_id, **params)
        for message in messages:
            orch.add_turn(role=message["role"], content=message.get("content"), agent=self.context.role)
        orch.add_turn(result.to_turn(agent=self.context.role))
        output, invalid = step.output(result)
        orch.state["outputs"][step.name] = output
        if invalid:
            orch.state["invalid"][step.name] = invalid


# --- checks before any call, and the run's statistics ----------------------------------
def steps_of(config: Mapping[str, Any]) -> list[str]:
    steps = config.get("steps")
    if isinstance(steps, str):
        steps = [steps]
    if not steps or not isinstance(steps, Sequence):
        raise ConfigError("steps must list at least one step, e.g. steps=[answer] with agents.answer.type=generate.step")
    return [str(s) for s in steps]


def check_run(config: Mapping[str, Any]) -> list[str]:
    """Every step's options, templates and schema, and the first readable row against them.

    Raises one ConfigError line; called by the driver (through the metrics) before Ray or the LLM starts.
    """
    steps = steps_of(config)
    agents = config.get("agents") or {}
    if len(set(steps)) != len(steps):
        raise ConfigError(f"steps={steps}: a step is listed twice")
    resolved = []
    for name in steps:
        section = agents.get(name)
        if not isinstance(section, Mapping) or section.get("type") != STEP_TYPE:
            raise ConfigError(f"step {name!r} needs agents.{name}.type={STEP_TYPE} (add it with +agents.{name}.type={STEP_TYPE})")
        if name in RESERVED:
            raise ConfigError(f"step {name!r}: the name is taken by a record field; call it something else")
        options = {k: v for k, v in section.items() if k not in ("type", "replicas", "max_in_flight", "resources")}
        resolved.append(Step.resolve(name, options, config))
    first = _first_row(config)
    if first is not None:
        _check_row(resolved, *first, config)
    return steps


def _first_row(config: Mapping[str, Any]) -> tuple[int, Mapping[str, Any]] | None:
    from matrix_core import get_plugin_host

    dataset = dict(config.get("dataset") or {})
    loader = get_plugin_host().get("dataset_loader", dataset.get("loader", "jsonl"))
    for number, row in loader.load(dataset):
        if isinstance(row, Mapping):
            return number, row
    return None


def _check_row(steps: list[Step], number: int, row: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    dataset = config.get("dataset") or {}
    where = f"row {number} of {dataset.get('path') or dataset.get('loader')}"
    columns = ", ".join(map(str, row)) or "none"
    earlier: dict[str, Any] = {}
    for step in steps:
        if step.name in row:
            raise ConfigError(f"step {step.name!r} has the name of a column of {where}: its output would replace it; rename the step")
        for template in filter(None, (step.prompt, step.system)):
            missing = template.unknown_names([*map(str, row), *earlier, "row"])
            if missing:
                raise ConfigError(f"{template.where}: {missing[0]!r} is not a column of {where} (columns: {columns}) nor an earlier step")
        try:
            step.messages(row, earlier)
            step.row_params(row)
        except (RenderError, StepInputError) as exc:
            raise ConfigError(f"agents.{step.name}: {where}: {exc}") from None
        earlier[step.name] = Placeholder()


class GenerateMetrics(RunMetrics):
    """Per step: outputs, schema-invalid outputs, answers from the cache; tokens; failed rows."""

    def __init__(self, config: Mapping[str, Any]):
        self.steps = check_run(config)  # the driver builds this before Ray and the LLM start: bad input stops the run in one line
        self.rows = self.failed = self.tokens = 0
        self.outputs: Counter[str] = Counter()
        self.invalid: Counter[str] = Counter()
        self.cached: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()

    def add(self, record: Mapping[str, Any]) -> None:
        self.rows += 1
        state = record.get("state") or {}
        for turn in record.get("history") or []:
            usage = turn.get("usage") or {}
            self.tokens += usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
            if turn.get("cached"):
                self.cached[turn.get("agent") or "?"] += 1
        for step in (state.get("outputs") or {}):
            self.outputs[step] += 1
        for step in (state.get("invalid") or {}):
            self.invalid[step] += 1
        if record.get("status") == "failed":
            self.failed += 1
            error = record.get("error") or {}
            self.reasons[str(error.get("message", "?")).split(":")[0]] += 1

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rows": self.rows, "failed": self.failed, "tokens": self.tokens}
        for step in self.steps:
            out[f"{step}: outputs"] = self.outputs[step]
            if self.invalid[step]:
                out[f"{step}: invalid"] = self.invalid[step]
            if self.cached[step]:
                out[f"{step}: from cache"] = self.cached[step]
        if self.reasons:
            out["failures"] = ", ".join(f"{k} x{v}" for k, v in self.reasons.most_common(3))
        return out
