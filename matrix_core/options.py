"""Typed options: the one place where every config section's keys, types and defaults live.

Hydra still composes the config (its base node is generated from these models, see
:func:`base_node`); right after composition :func:`validate` turns the plain dict into
typed sections, so a bad value is one line naming the key, the value and what was expected.

An agent declares its options as a nested class, like ``llm``'s ``class Options(llm.Options)``::

    class Answerer(Agent):
        class Options(AgentOptions):
            max_tokens: int = Field(96, ge=1, description="longest reply, in tokens")

and reads ``self.options.max_tokens``; ``matrix run WORKFLOW --help`` lists them.
"""
from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal, Mapping

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from .errors import ConfigError

if TYPE_CHECKING:
    from .plugins import PluginHost


MAX_ACTORS = 4096  # hosts or replicas beyond this are a typo, not a plan: Ray would queue them forever


class _Section(BaseModel):
    """A config section whose keys are all known: a misspelled key is an error."""

    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)


class _OpenSection(BaseModel):
    """A section with common keys plus plugin-specific ones (kept as given)."""

    model_config = ConfigDict(extra="allow", validate_default=True, allow_inf_nan=False)


class RunOptions(_Section):
    max_concurrent_tasks: int = Field(64, ge=1, description="global cap on tasks in flight (credits returned by the sink)")
    hosts: Annotated[int, Field(ge=1, le=MAX_ACTORS)] | Literal["auto"] = Field(
        "auto", description="Ray actors hosting agent replicas; auto = CPUs of the cluster (max 8)")
    address: str | None = Field(None, description="Ray cluster to join (ray://... or host:port); RAY_ADDRESS works too")
    num_cpus: int | None = Field(None, ge=1, le=1 << 20, description="CPUs of a local Ray started by the run")
    ray_temp_dir: str | None = Field(None, description="temp dir of a local Ray started by the run")
    trials: int = Field(1, ge=1, description="tasks per dataset row (task id = row key + trial)")
    max_steps: int = Field(100, ge=1, description="a task that takes more agent steps fails")
    task_timeout_s: float | None = Field(None, gt=0, description="a task older than this fails (null: no limit)")
    offload_threshold_bytes: int = Field(
        65536, ge=0, description="payloads/history segments above this travel through the object store (0: never)")
    colocate: bool = Field(True, description="replicas of all roles share host actors (hops stay in-process)")
    batch_max: int = Field(256, ge=1, description="most orchestrators in one actor call")
    outstanding_per_peer: int = Field(2, ge=1, description="actor calls in flight per peer before messages coalesce")
    checkpoint_every: int = Field(0, ge=0, description="snapshot a task every K steps (0: off); lost tasks restart from it")
    health_check_s: float = Field(2.0, gt=0, description="how often the driver checks that agent hosts are alive")
    lost_host_timeout_s: float = Field(
        60.0, gt=0, description="an agent host or the sink that does not answer a health check within this is lost: the run stops, naming it")
    connect_timeout_s: float = Field(30.0, gt=0, description="how long to wait for the Ray cluster at run.address to answer")
    force: bool = Field(False, description="append to an output written by a different workflow/dataset (--force)")
    progress: Literal["auto", "bar", "lines", "off"] = Field("auto", description="progress display")


class ResumeOptions(_Section):
    retry_failed: bool = Field(False, description="re-run tasks the output holds as failed")


class CacheOptions(_Section):
    """``cache``: the opt-in LLM response cache, shared by runs on this machine (``matrix cache info|clear``)."""

    enabled: bool = Field(False, description="answer identical calls (model, messages, tools, params, seed) from disk")
    path: str = Field("~/.cache/matrix/llm", description="cache directory")
    size_limit_mb: float = Field(1024, gt=0, description="least recently stored answers are evicted past this")


class DatasetOptions(_OpenSection):
    loader: str = Field("jsonl", description="dataset loader plugin (matrix plugins lists them)")
    path: str | None = Field(None, description="file the loader reads")
    id_field: str | None = Field("id", description="row field used as the stable row key (row number if absent)")
    limit: int | None = Field(None, ge=0, description="read at most this many rows (null: all)")
    size: int | None = Field(None, ge=0, description="rows of dataset.loader=range (synthetic rows)")


class OutputOptions(_OpenSection):
    """``output``: where results go; workflows may add their own keys (tau2: ``output.tau2_results``)."""

    path: str = Field("outputs/${workflow}.jsonl", description="where the sink writes (resume: run again with the same path)")


class SinkOptions(_OpenSection):
    name: str = Field("jsonl", description="sink plugin (sink=NAME)")
    path: str | None = Field(None, description="where this sink writes (default: output.path)")


class LLMClientOptions(_OpenSection):
    """``llm.client``: how agents call the LLM endpoints."""

    max_concurrency_per_endpoint: int = Field(64, ge=1, description="requests in flight per endpoint and agent host")
    timeout_s: float = Field(120.0, gt=0, description="per request, including time queued in the server")
    max_retries: int = Field(4, ge=0, description="retries of 429/5xx/timeouts/connection errors")
    backoff_base_s: float = Field(0.5, ge=0, description="first retry delay (doubles each retry, with jitter)")
    backoff_max_s: float = Field(20.0, ge=0, description="longest retry delay")
    params: dict[str, Any] = Field(default_factory=dict, description="default request parameters (temperature, ...)")
    tool_calling: Literal["native", "prompted", "auto"] = Field(
        "auto", description="native: send tools as is | prompted: schemas in the prompt, JSON-schema answers | auto: probe once")
    serve_path: Literal["handle", "proxy"] = Field(
        "handle", description="how agents reach a Ray Serve deployment: handle (DeploymentHandle, no HTTP) | proxy (Serve's HTTP proxy)")


class DeploymentOptions(_Section):
    """``llm.deployment``: how a backend's Ray Serve deployment is scaled, placed and checked
    (backends that offer one: ``LLMBackendSpec.serve_app``; see :mod:`matrix_core.deployments`).

    A backend's yaml may set its own defaults here (``deployment: {num_gpus: ${..tensor_parallel_size}}``);
    the resources are what ONE replica reserves, and the cluster is checked against them
    before anything is deployed.
    """

    name: str | None = Field(None, description="Serve application name (set by matrix: the service name, or one per run and resource)")
    min_replicas: int = Field(1, ge=0, description="fewest replicas Ray Serve's autoscaler keeps")
    max_replicas: int = Field(1, ge=1, description="most replicas Ray Serve's autoscaler starts")
    initial_replicas: int | None = Field(None, ge=0, description="replicas at deploy time (null: min_replicas)")
    target_ongoing_requests: float = Field(4.0, gt=0, description="requests in flight per replica the autoscaler aims at")
    max_ongoing_requests: int | None = Field(None, ge=1, description="requests one replica takes at once, more wait in Serve (null: the backend's)")
    upscale_delay_s: float = Field(30.0, ge=0, description="load must stay above target this long before a replica is added")
    downscale_delay_s: float = Field(600.0, ge=0, description="load must stay below target this long before a replica is removed")
    autoscaling: dict[str, Any] = Field(default_factory=dict, description="more Ray Serve AutoscalingConfig fields (look_back_period_s, ...)")
    num_cpus: float = Field(1.0, ge=0, description="CPUs one replica reserves")
    num_gpus: float = Field(0.0, ge=0, description="GPUs one replica reserves")
    resources: dict[str, float] = Field(default_factory=dict, description="other Ray resources one replica reserves")
    health_check_period_s: float = Field(10.0, gt=0, description="how often Serve checks a replica's engine")
    health_check_timeout_s: float = Field(30.0, gt=0, description="a check slower than this fails the replica")
    startup_timeout_s: float = Field(600.0, gt=0, description="deploy fails if not every replica is up within this")

    @model_validator(mode="after")
    def _replicas_in_order(self) -> "DeploymentOptions":
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas={self.min_replicas} is above max_replicas={self.max_replicas}")
        if self.initial_replicas is not None and not self.min_replicas <= self.initial_replicas <= self.max_replicas:
            raise ValueError(f"initial_replicas={self.initial_replicas} is outside min_replicas..max_replicas")
        return self

    def replica_demand(self) -> dict[str, float]:
        """Ray resources of one replica, by Ray's names (CPU, GPU, custom); zeros left out."""
        need = {"CPU": self.num_cpus, "GPU": self.num_gpus, **self.resources}
        return {k: float(v) for k, v in need.items() if v}


class LLMOptions(_OpenSection):
    """``llm``: the backend (``llm=NAME``) with its own keys, and the client block."""

    backend: str | None = Field(None, description="LLM backend plugin (llm=NAME)")
    client: LLMClientOptions = Field(default_factory=LLMClientOptions)
    deployment: DeploymentOptions = Field(default_factory=DeploymentOptions)


class RoleOptions(_OpenSection):
    """``agents.<role>``: how the runtime hosts a role. Other keys are the agent's options."""

    type: str = Field(description="agent type (matrix plugins lists them)")
    replicas: int | None = Field(None, ge=1, le=MAX_ACTORS, description="replicas of this role (null: one per host, 1 with resources)")
    max_in_flight: int = Field(64, ge=1, description="steps one replica runs at once")
    resources: dict[str, Any] = Field(default_factory=dict, description="Ray resources per replica (num_gpus, ...)")
    llm: str | None = Field(None, description="name of the LLM resource this role calls (null: the run's llm)")
    llms: list[str | None] | str | None = Field(None, description="other LLM resources the role reaches as self.llms[NAME]")


ROLE_KEYS = frozenset(RoleOptions.model_fields)


class AgentOptions(_OpenSection):
    """Base of an agent's ``Options``: subclass it as a nested ``class Options(AgentOptions)``.

    Undeclared keys are kept (``self.options.model_extra``) so a workflow may pass extra
    prompts to an agent that reads them itself.
    """


SAMPLING_KEYS = ("temperature", "top_p", "max_tokens", "seed", "frequency_penalty", "presence_penalty", "stop")


class SamplingOptions(AgentOptions):
    """Request parameters an LLM agent sends with each call; unset ones are left to
    ``llm.client.params`` and the server. ``self.options.sampling()`` gives the set ones."""

    temperature: float | None = Field(None, ge=0, description="sampling temperature")
    top_p: float | None = Field(None, gt=0, le=1, description="nucleus sampling mass")
    max_tokens: int | None = Field(None, ge=1, description="longest reply, in tokens")
    seed: int | None = Field(None, description="sampling seed (servers that support it)")
    frequency_penalty: float | None = Field(None, description="penalty on tokens by how often they appeared")
    presence_penalty: float | None = Field(None, description="penalty on tokens that appeared at all")
    stop: str | list[str] | None = Field(None, description="stop sequence(s)")

    def sampling(self) -> dict[str, Any]:
        return {k: v for k in SAMPLING_KEYS if (v := getattr(self, k)) is not None}


@dataclass
class Role:
    """A validated role section: how it is hosted, and the agent's own options."""

    section: RoleOptions
    options: AgentOptions
    agent_cls: type


@dataclass
class MatrixConfig:
    """A composed config, validated: typed sections plus the plain dict plugins receive."""

    workflow: str
    run: RunOptions
    resume: ResumeOptions
    dataset: DatasetOptions
    output: OutputOptions
    sink: SinkOptions
    llm: LLMOptions
    cache: CacheOptions
    roles: dict[str, Role]
    raw: dict[str, Any] = field(repr=False, default_factory=dict)


BASE_SECTIONS = ("run", "resume", "dataset", "output", "cache")  # in every composed config (base_node)

SECTIONS: dict[str, type[BaseModel]] = {
    "run": RunOptions, "resume": ResumeOptions, "dataset": DatasetOptions, "output": OutputOptions,
    "sink": SinkOptions, "llm": LLMOptions, "cache": CacheOptions,
}


def base_node() -> dict[str, Any]:
    """The defaults Hydra composes every workflow over (registered as ``matrix_options``)."""
    node = {name: SECTIONS[name]().model_dump() for name in BASE_SECTIONS}
    node["llm"] = {"client": LLMClientOptions().model_dump(), "deployment": DeploymentOptions().model_dump()}
    node["llms"] = {}  # named LLM resources: +llm@llms.NAME=BACKEND; roles pick one with agents.ROLE.llm
    return node


def parse(model: type[BaseModel], value: Any, where: str) -> Any:
    """``model`` validated from ``value``; a bad value raises one line naming ``where.key``."""
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}={value!r}: expected a mapping of options")
    try:
        return model.model_validate(dict(value))
    except ValidationError as exc:
        raise ConfigError(error_line(model, exc, where)) from None


def validate(cfg: Mapping[str, Any], host: "PluginHost") -> MatrixConfig:
    """Validates a composed config; the first bad key is reported (one line)."""
    deleted = [name for name in BASE_SECTIONS if name not in cfg]
    if deleted:
        raise ConfigError(f"config section {deleted[0]!r} was removed (~{deleted[0]}); every run needs it: override its keys instead ({deleted[0]}.KEY=VALUE)")
    sections = {name: parse(model, cfg.get(name), name) for name, model in SECTIONS.items()}
    cfg = {**cfg, **_workflow_options(cfg, host)}
    for name, resource in (cfg.get("llms") or {}).items():
        if isinstance(resource, Mapping):  # a string is an alias, checked with the role bindings
            parse(LLMOptions, resource, f"llms.{name}")
    agents = cfg.get("agents") or {}
    if not agents:
        raise ConfigError(f"workflow {cfg.get('workflow')!r} configures no agents (the 'agents' section is empty)")
    roles = {}
    for name, section in agents.items():
        if not isinstance(section, Mapping) or "type" not in section:
            raise ConfigError(f"agents.{name}.type is missing: name the agent type for role {name!r}")
        role = parse(RoleOptions, section, f"agents.{name}")
        agent_cls = host.get("agent", role.type).cls
        own = {k: v for k, v in section.items() if k not in ROLE_KEYS}
        roles[name] = Role(role, parse(agent_cls.Options, own, f"agents.{name}"), agent_cls)
    return MatrixConfig(workflow=str(cfg.get("workflow")), roles=roles, raw=dict(cfg), **sections)


def _workflow_options(cfg: Mapping[str, Any], host: "PluginHost") -> dict[str, Any]:
    """The workflow's own top-level keys (``rounds``), typed by its ``WorkflowSpec.options``:
    a bad value fails here, before any row, not once per row."""
    entry = host.registry("workflow").get(str(cfg.get("workflow")))
    model = getattr(entry.spec, "options", None) if entry is not None else None
    if model is None:
        return {}
    given = {k: cfg[k] for k in model.model_fields if k in cfg}
    return parse(model, given, "").model_dump(include=set(given))


# --- one line per error, and the same words in --help --------------------------------------

def error_line(model: type[BaseModel], exc: ValidationError, where: str) -> str:
    err = exc.errors()[0]
    path, info = _field_path(model, err["loc"])
    key = ".".join([where, *path]) if where else ".".join(path)
    if err["type"] == "missing":
        return f"{key} is missing" + (f": expected {describe_type(info)}" if info else "")
    if err["type"] == "value_error" and not path:  # a check across fields (model_validator)
        return f"{key}: {err['ctx']['error']}"
    if err["type"] == "extra_forbidden":
        known = ", ".join(sorted(model.model_fields)) if len(path) == 1 else ""
        return f"{key} is not an option" + (f" (known: {known})" if known else "")
    expected = describe_type(info) if info is not None else err["msg"]
    return f"{key}={err.get('input')!r}: expected {expected}"


def _field_path(model: type[BaseModel], loc: tuple) -> tuple[list[str], FieldInfo | None]:
    """The config keys in a pydantic error location (union branch tags dropped) and the field."""
    path: list[str] = []
    info = None
    current: Any = model
    for part in loc:
        fields = current.model_fields if isinstance(current, type) and issubclass(current, BaseModel) else None
        if fields is None or not isinstance(part, str):
            break  # a union branch tag, a mapping key or a list index: the field is found
        path.append(part)
        if part not in fields:  # an unknown key
            break
        info = fields[part]
        current = info.annotation
    return path, info


_BOUND_WORDS = {annotated_types.Ge: ">=", annotated_types.Gt: ">", annotated_types.Le: "<=", annotated_types.Lt: "<"}


def describe_type(info: FieldInfo) -> str:
    """``an integer >= 1``, ``a number > 0 or null``, ``one of 'auto', 'bar'``: what a field takes."""
    return _describe(info.annotation, list(info.metadata))


def _describe(annotation: Any, metadata: list) -> str:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        inner, *extra = typing.get_args(annotation)
        return _describe(inner, metadata + [m for e in extra for m in (e.metadata if isinstance(e, FieldInfo) else [e])])
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        words = [_describe(a, metadata) for a in args if a is not type(None)]
        return " or ".join(words + (["null"] if type(None) in args else []))
    if origin is Literal:
        values = [repr(v) for v in typing.get_args(annotation)]
        return values[0] if len(values) == 1 else "one of " + ", ".join(values)
    bounds = " and".join(
        f" {word} {getattr(m, next(iter(type(m).__dataclass_fields__)))}"
        for m in metadata for kind, word in _BOUND_WORDS.items() if isinstance(m, kind)
    )
    if annotation is bool:
        return "true or false"
    if annotation is int:
        return "an integer" + bounds
    if annotation is float:
        return "a number" + bounds
    if annotation is str:
        return "a string"
    if origin is dict or annotation is dict:
        return "a mapping"
    if origin is list or annotation is list:
        return "a list"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "a mapping of options"
    return getattr(annotation, "__name__", str(annotation))


def type_name(info: FieldInfo) -> str:
    """Short type for --help: ``int >= 1``, ``float | None``."""
    words = describe_type(info)
    for long, short in (("an integer", "int"), ("a number", "float"), ("true or false", "bool"),
                        ("a string", "str"), ("a mapping of options", "options"), ("a mapping", "dict"), ("a list", "list")):
        words = words.replace(long, short)
    return words.replace(" or ", " | ")


def _show(value: Any) -> str:
    """A value as it is written on the command line: null, true, 3, 'text'."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return repr(value)


def default_of(info: FieldInfo) -> Any:
    if info.default_factory is not None:
        return info.default_factory()
    return None if info.default is PydanticUndefined else info.default


def describe_fields(model: type[BaseModel], values: Mapping[str, Any] | None = None, skip: frozenset = frozenset()) -> list[tuple[str, str, str, str]]:
    """(name, type, default, description) per field; ``values`` (the composed config) wins
    over the model's default, as it is what a run gets."""
    values = values or {}
    rows = []
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        required = info.is_required() and name not in values
        default = "required" if required else _show(values.get(name, default_of(info)))
        rows.append((name, type_name(info), default, info.description or ""))
    return rows
