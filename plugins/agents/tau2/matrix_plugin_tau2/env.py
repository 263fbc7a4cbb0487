"""Domain environments: per-task state over a shared database, tools, and their schemas.

Re-implemented from tau2-bench's published specification (policies, task files, docs);
no tau2-bench code is used. The data files are MIT, Sierra Research (see ``data/LICENSE``).

Thousands of tasks run at once, so no task copies a domain database. A :class:`State` is
the read-only base (loaded once per process) plus this task's *delta*: the records it
changed, copied on first write. The delta is plain JSON, small, and travels with the
orchestrator, so the environment agent itself stays stateless.
"""
from __future__ import annotations

import ast
import copy
import functools
import hashlib
import inspect
import json
import operator
import re
import unicodedata
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .versions import DATA_DIR, Behaviour

DEFAULT_BEHAVIOUR = Behaviour()


class ToolError(Exception):
    """A tool refused the call; the message goes back to the caller as the tool result."""


class State:
    """A two-level database ``base[table][key] -> record`` seen through one task's changes.

    ``delta[table][key]`` holds a changed or new record, or ``None`` for a deleted one.
    Read records through :meth:`get` / :meth:`items` and never mutate them: call
    :meth:`edit` (copy on first write) or :meth:`put` instead.
    """

    def __init__(self, base: Mapping[str, Mapping[str, Any]], delta: dict[str, dict[str, Any]] | None = None):
        self.base = base
        self.delta: dict[str, dict[str, Any]] = delta if delta is not None else {}

    def get(self, table: str, key: str, default: Any = None) -> Any:
        changed = self.delta.get(table)
        if changed is not None and key in changed:
            value = changed[key]
            return default if value is None else value
        return self.base.get(table, {}).get(key, default)

    def has(self, table: str, key: str) -> bool:
        return self.get(table, key) is not None

    def keys(self, table: str) -> Iterator[str]:
        """Keys in base order, then keys this task added."""
        changed = self.delta.get(table, {})
        base = self.base.get(table, {})
        for key in base:
            if changed.get(key, True) is not None:
                yield key
        for key, value in changed.items():
            if key not in base and value is not None:
                yield key

    def items(self, table: str) -> Iterator[tuple[str, Any]]:
        for key in self.keys(table):
            yield key, self.get(table, key)

    def values(self, table: str) -> Iterator[Any]:
        for _, value in self.items(table):
            yield value

    def count(self, table: str) -> int:
        return sum(1 for _ in self.keys(table))

    def edit(self, table: str, key: str) -> Any:
        """The record, mutable: copied into the delta the first time this task writes it."""
        changed = self.delta.setdefault(table, {})
        if key in changed and changed[key] is not None:
            return changed[key]
        record = self.base.get(table, {}).get(key) if key not in changed else None
        if record is None:
            raise KeyError(f"{table}/{key}")
        changed[key] = copy.deepcopy(record)
        return changed[key]

    def put(self, table: str, key: str, record: Any) -> None:
        if record is None:
            raise ValueError("a record cannot be None (use delete)")
        self.delta.setdefault(table, {})[key] = record

    def delete(self, table: str, key: str) -> None:
        self.delta.setdefault(table, {})[key] = None

    def update(self, data: Mapping[str, Any]) -> None:
        """Deep-merges ``{table: {key: partial record}}`` (tau2's initialization data)."""
        for table, records in data.items():
            for key, partial in records.items():
                if isinstance(partial, Mapping) and isinstance(self.get(table, key), Mapping):
                    _deep_merge(self.edit(table, key), partial)
                else:
                    self.put(table, key, copy.deepcopy(partial))

    def changes(self) -> dict[str, dict[str, Any]]:
        """The delta without entries equal to the base: two states are equal iff these are."""
        out: dict[str, dict[str, Any]] = {}
        for table, records in self.delta.items():
            base = self.base.get(table, {})
            for key, value in records.items():
                if value is None and key not in base:
                    continue
                if value is not None and base.get(key) == value:
                    continue
                out.setdefault(table, {})[key] = value
        return out

    def digest(self) -> str:
        """A hash of the whole database as this task sees it (computed from the changes)."""
        blob = json.dumps(self.changes(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()


def _deep_merge(target: dict, patch: Mapping[str, Any]) -> None:
    for k, v in patch.items():
        if isinstance(v, Mapping) and isinstance(target.get(k), dict):
            _deep_merge(target[k], v)
        else:
            target[k] = copy.deepcopy(v)


# --- tools ---------------------------------------------------------------------------

READ, WRITE, THINK, GENERIC = "read", "write", "think", "generic"


def tool(kind: str = READ, scalars_as_text: bool = False) -> Callable[[Callable], Callable]:
    """Marks a toolkit method as a tool the model can call. ``kind`` WRITE tools change state.

    ``scalars_as_text``: the result is a dict that tau2 builds by hand (not a model), whose
    number and bool values tau2's rendering writes as strings (``"charge": "4.0"``).
    """

    def mark(fn: Callable) -> Callable:
        fn.__tau2_tool__ = kind
        fn.__tau2_scalars_as_text__ = scalars_as_text
        return fn

    return mark


@dataclass
class ToolResult:
    content: str
    error: bool = False


class Toolkit:
    """One side's tools (``side`` = "assistant" or "user") over its :class:`State`.

    Public methods marked with :func:`tool` are tools; other public methods (assertions,
    initialization actions) are reachable by name through :meth:`call_function` only.
    Argument descriptions come from the Google-style ``Args:`` section of each docstring.
    """

    side: ClassVar[str] = "assistant"

    def __init__(self, db: State, env: Environment | None = None):
        self.db = db
        self.env = env

    @property
    def behaviour(self) -> Behaviour:
        return self.env.behaviour if self.env is not None else DEFAULT_BEHAVIOUR

    @classmethod
    def tool_kinds(cls) -> dict[str, str]:
        return _tool_kinds(cls)

    @classmethod
    def schemas(cls) -> list[dict[str, Any]]:
        return _schemas(cls)

    def has_tool(self, name: str) -> bool:
        return name in self.tool_kinds()

    def invoke(self, name: str, arguments: Any) -> ToolResult:
        """Runs one tool call from the model; any failure becomes an ``Error: ...`` result."""
        if name not in self.tool_kinds():
            return ToolResult(f"Error: Tool '{name}' not found.", error=True)
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except ValueError as exc:
                return ToolResult(f"Error: tool arguments are not valid JSON ({exc})", error=True)
        if not isinstance(arguments, Mapping):
            return ToolResult("Error: tool arguments must be a JSON object", error=True)
        try:
            if self.behaviour.validate_args:
                result = _validated(type(self), name)(self, **arguments)
            else:  # tau2: the arguments as given; only dicts for model parameters become models
                result = getattr(self, name)(**_models_from_dicts(type(self), name, arguments))
        except Exception as exc:  # tau2 answers any failure of a tool with its text
            return ToolResult(f"Error: {_message(exc, self.behaviour.validate_args)}", error=True)
        scalars_as_text = getattr(getattr(type(self), name), "__tau2_scalars_as_text__", False)
        return ToolResult(to_json_str(result, scalars_as_text))

    def call_function(self, name: str, arguments: Mapping[str, Any] | None = None) -> Any:
        """Calls any public method by name (initialization actions, assertions)."""
        fn = getattr(self, name, None) if not name.startswith("_") else None
        if fn is None or not callable(fn):
            raise ToolError(f"{self.side} environment has no function {name!r}")
        return fn(**dict(arguments or {}))


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _message(exc: BaseException, validated: bool = True) -> str:
    """The error text of a failed call: the same in every process (the evaluator replays
    calls elsewhere), so no object reprs with memory addresses. Argument validation errors
    name the argument only (their input holds the toolkit); a model's own validation error
    reads as pydantic writes it, as in tau2."""
    import pydantic

    if isinstance(exc, pydantic.ValidationError) and validated:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors(include_url=False))
        return f"{exc.error_count()} validation error(s) for {exc.title}: {problems}"
    if isinstance(exc, KeyError) and exc.args:
        return _ADDRESS.sub("", str(exc.args[0]))
    return _ADDRESS.sub("", str(exc))


def to_json_str(result: Any, scalars_as_text: bool = False) -> str:
    """A tool's result as tau2 renders it: text as is, a number or bool as ``str()``, else
    JSON; with ``scalars_as_text`` the dict's number and bool values become strings."""
    if isinstance(result, str):
        return result
    if hasattr(result, "model_dump"):
        result = result.model_dump(mode="json")
    if isinstance(result, (bool, int, float)):
        return str(result)
    if scalars_as_text and isinstance(result, dict):
        result = {k: str(v) if isinstance(v, (bool, int, float)) else v for k, v in result.items()}
    return json.dumps(result, default=str)


@functools.cache
def _model_params(cls: type, name: str) -> dict[str, tuple[type, bool]]:
    """Parameters typed as a pydantic model, or a list of one: name -> (model, is_list)."""
    import typing

    import pydantic

    out = {}
    for pname, param in list(inspect.signature(getattr(cls, name), eval_str=True).parameters.items())[1:]:
        ann, is_list = param.annotation, False
        if typing.get_origin(ann) in (list, typing.List):
            ann, is_list = (typing.get_args(ann) or (None,))[0], True
        if isinstance(ann, type) and issubclass(ann, pydantic.BaseModel):
            out[pname] = (ann, is_list)
    return out


def _models_from_dicts(cls: type, name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """As tau2's tools do: a dict (or a list of only dicts) for a model parameter becomes the model."""
    args = dict(arguments)
    for pname, (model, is_list) in _model_params(cls, name).items():
        value = args.get(pname)
        if is_list and isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            args[pname] = [model(**v) for v in value]
        elif not is_list and isinstance(value, dict):
            args[pname] = model(**value)
    return args


@functools.cache
def _tool_kinds(cls: type) -> dict[str, str]:
    return {
        name: fn.__tau2_tool__
        for name, fn in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_") and hasattr(fn, "__tau2_tool__")
    }


@functools.cache
def _validated(cls: type, name: str) -> Callable:
    """The tool with pydantic argument validation (types coerced as JSON allows, unknown args refused)."""
    import pydantic

    return pydantic.validate_call(config={"extra": "forbid", "arbitrary_types_allowed": True})(getattr(cls, name))


_ARG_LINE = re.compile(r"^\s*(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def _parse_doc(doc: str) -> tuple[str, dict[str, str]]:
    lines = inspect.cleandoc(doc or "").splitlines()
    summary, args, current, section = [], {}, None, None
    for line in lines:
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:", "Parameters:"):
            section = "args"
            continue
        if stripped in ("Returns:", "Raises:", "Example:", "Examples:"):
            section = "other"
            continue
        if section is None:
            summary.append(stripped)
        elif section == "args":
            m = _ARG_LINE.match(line)
            if m and line.startswith(("    ", "\t")) and not line.startswith(("        ", "\t\t")):
                current = m.group(1)
                args[current] = m.group(2).strip()
            elif current and stripped:
                args[current] += " " + stripped
    return " ".join(s for s in summary if s).strip(), args


@functools.cache
def _schemas(cls: type) -> list[dict[str, Any]]:
    import pydantic

    out = []
    for name in sorted(_tool_kinds(cls)):
        fn = getattr(cls, name)
        description, arg_docs = _parse_doc(fn.__doc__ or "")
        sig = inspect.signature(fn, eval_str=True)  # modules use `from __future__ import annotations`
        fields = {}
        for pname, param in list(sig.parameters.items())[1:]:
            annotation = Any if param.annotation is inspect.Parameter.empty else param.annotation
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[pname] = (annotation, pydantic.Field(default, description=arg_docs.get(pname)))
        model = pydantic.create_model(f"{name}_args", **fields)
        params = model.model_json_schema()
        params.pop("title", None)
        for prop in params.get("properties", {}).values():
            prop.pop("title", None)
        params.setdefault("properties", {})
        out.append({"type": "function", "function": {"name": name, "description": description, "parameters": params}})
    return out


def fold_text(text: str) -> str:
    """Case- and accent-insensitive form: a name or email typed without its accents still matches."""
    decomposed = unicodedata.normalize("NFD", text.strip())
    # marks go before casefold: casefold can introduce one (U+0130 -> "i" + combining dot)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


# --- calculate: the arithmetic tau2 evaluates, without eval ------------------------------

_ALLOWED_CHARS = set("0123456789+-*/(). ")
_BINARY = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_MAX_EXPONENT = 10_000  # past this a power only burns CPU (9**9**9); tau2 would hang


def _arithmetic(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _arithmetic(node.left), _arithmetic(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > _MAX_EXPONENT:
            raise ToolError("Exponent too large")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_arithmetic(node.operand))
    raise ToolError("Invalid expression")


def calculate_expression(expression: str) -> str:
    """tau2's ``calculate``: the value rounded to 2 decimals, as ``str(float)``."""
    if not all(char in _ALLOWED_CHARS for char in expression):
        raise ToolError("Invalid characters in expression")
    try:
        # eval() drops leading blanks and names the source "<string>": so do we, so that
        # syntax errors read exactly as tau2's
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)  # "(2)(3)": refused below anyway
            tree = compile(expression.lstrip(" "), "<string>", "eval", ast.PyCF_ONLY_AST)
        return str(round(float(_arithmetic(tree.body)), 2))
    except (SyntaxError, ArithmeticError, TypeError) as exc:  # TypeError: float() of (-8) ** 0.5
        raise ToolError(str(exc)) from None


# --- domains and environments ----------------------------------------------------------


@dataclass
class Domain:
    """A tau2 domain: its data, policy, toolkits and per-step synchronisation.

    ``load_db`` / ``load_user_db`` return the base tables (called once per process and
    cached); ``sync`` runs after every step that touched the environment (telecom pushes
    the agent's database into the user's device).
    """

    name: str
    assistant_tools: type[Toolkit]
    load_db: Callable[[], Mapping[str, Mapping[str, Any]]]
    policy: Callable[[], str]
    user_tools: type[Toolkit] | None = None
    load_user_db: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None
    sync: Callable[[Environment], None] | None = None
    data_dir: Path = field(default=DATA_DIR / "domains")

    def tasks_file(self, variant: str = "tasks") -> Path:
        return self.data_dir / self.name / f"{variant}.json"

    @functools.cached_property
    def db(self) -> Mapping[str, Mapping[str, Any]]:
        return self.load_db()

    @functools.cached_property
    def user_db(self) -> Mapping[str, Mapping[str, Any]] | None:
        return self.load_user_db() if self.load_user_db else None

    def environment(self, snapshot: Mapping[str, Any] | None = None, behaviour: Behaviour | None = None) -> Environment:
        return Environment(self, snapshot, behaviour)


class Environment:
    """A task's environment: both sides' toolkits over their states.

    :meth:`snapshot` gives the JSON delta to carry in the orchestrator;
    ``domain.environment(snapshot)`` rebuilds the environment in any process.
    """

    def __init__(self, domain: Domain, snapshot: Mapping[str, Any] | None = None, behaviour: Behaviour | None = None):
        snapshot = snapshot or {}
        self.domain = domain
        self.behaviour = behaviour or DEFAULT_BEHAVIOUR
        self.db = State(domain.db, copy.deepcopy(snapshot.get("db") or {}))
        self.assistant = domain.assistant_tools(self.db, self)
        self.user_state: State | None = None
        self.user: Toolkit | None = None
        if domain.user_tools is not None:
            self.user_state = State(domain.user_db or {}, copy.deepcopy(snapshot.get("user_db") or {}))
            self.user = domain.user_tools(self.user_state, self)

    def toolkit(self, side: str) -> Toolkit:
        kit = self.assistant if side == "assistant" else self.user if side == "user" else None
        if kit is None:
            raise ToolError(f"domain {self.domain.name!r} has no {side} tools")
        return kit

    def call_tool(self, side: str, name: str, arguments: Any, sync: bool = True) -> ToolResult:
        """A tool call by the assistant or the user, then the domain's sync (tau2 skips it
        when it builds the gold environment: ``sync=False``)."""
        try:
            kit = self.toolkit(side)
        except ToolError as exc:
            return ToolResult(f"Error: {exc}", error=True)
        result = kit.invoke(name, arguments)
        if sync:
            self.sync()
        return result

    def replay(self, actions: list[Mapping[str, Any]]) -> list[ToolResult]:
        """Runs tau2 actions (``name``, ``arguments``, ``requestor`` = assistant by default) in order."""
        return [self.call_tool(a.get("requestor") or "assistant", a["name"], a.get("arguments") or {}) for a in actions]

    def run_function(self, env_type: str, func_name: str, arguments: Mapping[str, Any] | None = None) -> Any:
        """An initialization action or assertion (any public toolkit method), then sync."""
        result = self.toolkit(env_type).call_function(func_name, arguments)
        self.sync()
        return result

    def sync(self) -> None:
        if self.domain.sync is not None:
            self.domain.sync(self)

    def apply_initial_state(self, initial_state: Mapping[str, Any] | None) -> None:
        """tau2's ``initial_state``: initialization data, then initialization actions.

        ``message_history`` is the workflow's business (it becomes the first turns).
        """
        if not initial_state:
            return
        data = initial_state.get("initialization_data") or {}
        if data.get("agent_data"):
            self.db.update(data["agent_data"])
        if data.get("user_data"):
            if self.user_state is None:
                raise ToolError(f"domain {self.domain.name!r} has no user database for user_data")
            self.user_state.update(data["user_data"])
        for action in initial_state.get("initialization_actions") or []:
            self.run_function(action["env_type"], action["func_name"], action.get("arguments") or {})
        self.sync()

    def snapshot(self) -> dict[str, Any]:
        snap: dict[str, Any] = {"db": self.db.delta}
        if self.user_state is not None:
            snap["user_db"] = self.user_state.delta
        return snap

    def same_state(self, other: Environment) -> tuple[bool, bool]:
        """(agent databases equal, user databases equal)."""
        user_equal = True
        if self.user_state is not None and other.user_state is not None:
            user_equal = self.user_state.digest() == other.user_state.digest()
        return self.db.digest() == other.db.digest(), user_equal


DOMAINS = ("mock", "airline", "retail", "telecom")


@functools.cache
def get_domain(name: str) -> Domain:
    """The domain, built once per process: ``matrix_plugin_tau2.domains.<name>.domain()``."""
    import importlib

    if name not in DOMAINS:
        raise KeyError(f"unknown tau2 domain {name!r}; known: {', '.join(DOMAINS)}")
    return importlib.import_module(f"{__package__}.domains.{name}").domain()


def load_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)
