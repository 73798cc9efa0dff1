"""Scenario files: the schema (pydantic models) and a YAML loader whose errors
point at the offending line.

A scenario is written by hand, so every mistake should be reported once, in
terms of the file: `scenarios/x.yaml:12:5: agents[0].count: ...`. To get
there the loader composes the YAML into nodes (which remember their line and
column), indexes those nodes by key path, and maps each pydantic error
location back onto that index.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from yaml.error import Mark, MarkedYAMLError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from orchestrator import chaos as chaos_registry
from orchestrator import mechanisms as mechanism_registry
from orchestrator.chaos import ChaosEvent
from orchestrator.mechanisms import IncentiveConfig
from orchestrator.schema_types import Blocks, DurationS, Gas, Rate, Strict, Wei
from orchestrator.telemetry_config import TelemetryConfig
from orchestrator.units import ETHER, GWEI

__all__ = [
    "AgentGroup",
    "ChainConfig",
    "DatasetConfig",
    "EvaluationConfig",
    "IncentiveConfig",
    "ModelConfig",
    "OutputsConfig",
    "Scenario",
    "ScenarioError",
    "ScenarioIssue",
    "ScheduleConfig",
    "load_scenario",
    "load_scenario_text",
    "scenario_json_schema",
]


# --------------------------------------------------------------------------
# Unit-aware field types and the strict base: orchestrator/schema_types.py (shared with the
# chaos and mechanism registries, whose classes this schema assembles)

_Strict = Strict


# Names end up in result folder and file names, hence the conservative set.
_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_POLICY_PATTERN = re.compile(rf"{_IDENT}|{_IDENT}(?:\.{_IDENT})*:{_IDENT}")
_ENV_NAME_PATTERN = re.compile(_IDENT)
_HEX_KEY_PATTERN = re.compile(r"(?:0x)?[0-9a-fA-F]{64}")


def _check_name(value: str, what: str) -> str:
    if not re.fullmatch(_NAME_PATTERN, value):
        raise ValueError(
            f"{what} {value!r} must be 1-64 characters from letters, digits, '_', '.', '-'"
        )
    if set(value) == {"."}:
        raise ValueError(f"{what} {value!r} is not usable as a folder name")
    return value


# --------------------------------------------------------------------------
# Schema


class ChainConfig(_Strict):
    rpc_url: str | list[str] | None = Field(
        None, description="use an existing node at this URL instead of starting anvil; a list gives "
        "several endpoints of the same chain (shards spread over them, every client fails over between them)"
    )
    mining: Literal["interval", "driven"] = Field(
        "interval",
        description="'interval': the node mines every block_time; "
        "'driven': the orchestrator mines blocks itself",
    )
    block_time: DurationS = Field(1, ge=1)
    gas_limit: Gas = Field(30_000_000, ge=1_000_000)
    base_fee: Wei = Field(1 * GWEI, description="the node's initial base fee")
    accounts: int = Field(10, ge=1, le=1000, description="number of funded dev accounts")
    balance: Wei = Field(1_000_000 * ETHER, description="balance of each dev account")
    chain_id: int = Field(31337, ge=1)
    order: Literal["fees", "fifo"] = Field("fees", description="transaction ordering in blocks")
    funder_key_env: str | None = Field(
        None,
        description="name of the environment variable holding the funding account's "
        "private key when rpc_url is set (never the key itself)",
    )
    prune_history: int | None = Field(
        None, ge=8, description="managed node: keep only the states of this many recent blocks in memory "
        "(anvil --prune-history); bounds the node's memory in long runs (about half of its growth, "
        "benchmarks/RESULTS.md), but calls against older blocks fail: revert reasons, which are replayed "
        "against the block before, become unavailable for transactions read later than that")
    checkpoint_every: Blocks = Field(
        25, ge=0, description="managed node: dump its state every this many blocks, to restart from "
        "if the node process dies (0: never)")

    @field_validator("rpc_url")
    @classmethod
    def _rpc_url_scheme(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and not value:
            raise ValueError("rpc_url: the list of endpoints is empty")
        for url in [value] if isinstance(value, str) else value or []:
            if not re.match(r"(?i)(https?|wss?)://.", url):
                raise ValueError(f"rpc_url {url!r} must be an http(s):// or ws(s):// URL")
        return value

    # A field validator rather than a model validator so that the error
    # points at the `mining:` line; rpc_url is declared first, so it is in
    # info.data by now.
    @field_validator("mining")
    @classmethod
    def _external_node_mines_itself(cls, value: str, info: ValidationInfo) -> str:
        if value == "driven" and info.data.get("rpc_url"):
            raise ValueError(
                "mining must be 'interval' when rpc_url is set: an external node mines "
                "on its own and cannot be driven block by block"
            )
        return value

    @field_validator("funder_key_env")
    @classmethod
    def _env_name_not_key(cls, value: str | None) -> str | None:
        if value is None:
            return value
        # Deliberately does not echo the value: it may be a secret.
        if _HEX_KEY_PATTERN.fullmatch(value):
            raise ValueError(
                "this looks like a private key; put the key in an environment variable "
                "and write the variable's name here"
            )
        if not _ENV_NAME_PATTERN.fullmatch(value):
            raise ValueError(
                "must be the name of an environment variable (letters, digits, '_'; "
                "not starting with a digit)"
            )
        return value


MODEL_TYPES = ("sparse_perceptron", "dense_perceptron", "naive_bayes", "dense_nearest_centroid",
               "sparse_nearest_centroid")
BINARY_MODELS = ("sparse_perceptron", "dense_perceptron")  # one weight vector: two classes only
PERCEPTRONS = BINARY_MODELS
ModelType = Literal["sparse_perceptron", "dense_perceptron", "naive_bayes", "dense_nearest_centroid",
                    "sparse_nearest_centroid"]


def _normalise_model_type(value: Any) -> Any:
    # Scenarios written before there was a choice say "sparse perceptron"; keep them valid.
    return "sparse_perceptron" if value == "sparse perceptron" else value


class ModelConfig(_Strict):
    type: Annotated[ModelType, BeforeValidator(_normalise_model_type)] = Field(
        "sparse_perceptron",
        description="sparse_perceptron, dense_perceptron (binary labels); naive_bayes, dense_nearest_centroid, "
        "sparse_nearest_centroid (two or more classes). 'sparse perceptron' is accepted for sparse_perceptron")
    # None means "not given": an option given for a model that has no use for it is a mistake worth
    # reporting, so defaults are filled in only for the types they belong to.
    learning_rate: float | None = Field(None, gt=0, description="perceptrons: step of an update (default 0.5)")
    intercept: float | None = Field(None, description="perceptrons: fixed intercept, never trained (default 0)")
    smoothing: float | None = Field(
        None, gt=0, description="naive_bayes: additive smoothing of the counts, 1 = Laplace (default 1)")

    @field_validator("learning_rate", "intercept", "smoothing")
    @classmethod
    def _option_applies(cls, value: float | None, info: ValidationInfo) -> float | None:
        kind = info.data.get("type")
        owners = {"learning_rate": PERCEPTRONS, "intercept": PERCEPTRONS, "smoothing": ("naive_bayes",)}
        if value is not None and kind is not None and kind not in owners[info.field_name or ""]:
            raise ValueError(f"{info.field_name} applies to {' and '.join(owners[info.field_name or ''])} only, "
                             f"not to model type {kind!r}; remove it")
        return value

    @model_validator(mode="after")
    def _defaults_of_the_type(self) -> ModelConfig:
        if self.type in PERCEPTRONS:
            if self.learning_rate is None:
                self.learning_rate = 0.5
            if self.intercept is None:
                self.intercept = 0.0
        elif self.type == "naive_bayes" and self.smoothing is None:
            self.smoothing = 1.0
        return self

    @property
    def binary_only(self) -> bool:
        return self.type in BINARY_MODELS

    @property
    def dense(self) -> bool:
        return self.type.startswith("dense_")


class DatasetConfig(_Strict):
    name: Literal["synthetic_sparse", "breast_cancer", "digits", "tictactoe", "csv", "libsvm"] = Field(
        "synthetic_sparse", description="bundled or generated data, or the user's own file (csv, libsvm)")
    path: str | None = Field(None, description="csv / libsvm: the file (relative to the working directory)")
    label_column: int | str = Field(-1, description="csv: the label column, by index or header name")
    positive: str | None = Field(None, description="csv / libsvm / digits: the label value that counts as 1 "
                                 "(default: the larger of exactly two values; digits: 5-9 vs 0-4)")
    multiclass: bool = Field(False, description="keep every label value as its own class (digits: 10 classes "
                             "0-9; csv / libsvm: one class per distinct value) instead of two; needs a "
                             "multi-class model (naive_bayes, dense_nearest_centroid, sparse_nearest_centroid)")
    samples: int = Field(2000, ge=20)
    features: int = Field(1000, ge=2, description="vocabulary size (synthetic_sparse)")
    avg_length: int = Field(
        20, ge=1, description="average number of present features per sample (synthetic_sparse)"
    )
    noise: float = Field(0.05, ge=0, lt=0.5, description="fraction of flipped labels")
    init_train_fraction: float = Field(
        0.08, gt=0, lt=1, description="share of samples the model is trained on before deploy"
    )
    test_fraction: float = Field(0.2, gt=0, lt=1, description="share held out for evaluation")

    @model_validator(mode="after")
    def _file_needs_a_path(self) -> DatasetConfig:
        if self.name in ("csv", "libsvm") and not self.path:
            raise ValueError(f"dataset {self.name!r} needs 'path': the file to read")
        return self

    @field_validator("multiclass")
    @classmethod
    def _multiclass_source(cls, value: bool, info: ValidationInfo) -> bool:
        name = info.data.get("name")
        if value and name in ("synthetic_sparse", "breast_cancer", "tictactoe"):
            raise ValueError(f"dataset {name!r} has two classes only; multiclass applies to digits, csv and libsvm")
        if value and info.data.get("positive") is not None:
            raise ValueError("multiclass keeps every label as a class: remove 'positive' (it picks the one "
                             "value that counts as 1 in a two-class set)")
        return value

    @model_validator(mode="after")
    def _agents_get_the_rest(self) -> DatasetConfig:
        total = self.init_train_fraction + self.test_fraction
        if total >= 1:
            raise ValueError(
                f"init_train_fraction + test_fraction must be below 1 so that samples are "
                f"left for the agents (got {self.init_train_fraction} + {self.test_fraction}"
                f" = {total:g})"
            )
        return self


def _incentive_union() -> Any:
    # One member per registered mechanism (built-ins and plugins), told apart by `type`.
    members = tuple(m.config_cls for m in mechanism_registry.mechanisms().values())
    return Annotated[Union[members], Field(discriminator="type")]  # noqa: UP007 - built at run time


def _default_incentive_type(value: Any) -> Any:
    # Scenarios written before there was a choice leave `type` out: they meant stakeable.
    if isinstance(value, dict) and "type" not in value:
        return {"type": "stakeable", **value}
    return value


def _default_incentive() -> IncentiveConfig:
    return mechanism_registry.mechanisms()["stakeable"].config_cls(type="stakeable")


class AgentGroup(_Strict):
    policy: str = Field(
        description="a registered policy name like 'honest', or 'module.path:ClassName'"
    )
    count: int = Field(ge=1, le=100_000)
    funding: Wei = Field(10 * ETHER, description="ether given to each agent")
    samples_per_agent: int | None = Field(
        None, ge=1, description="None: share the agents' part of the dataset evenly"
    )
    rate: Rate = Field(
        0.05, gt=0, description="contributions per second of chain time per agent"
    )
    arrival: Literal["poisson", "constant", "burst"] = Field(
        "poisson", description="arrival process: Poisson at `rate`, evenly spread at `rate`, or bursts"
    )
    burst_size: int = Field(10, ge=1, description="contributions per burst (arrival: burst)")
    burst_every: DurationS = Field(60, ge=1, description="seconds between bursts (arrival: burst)")
    params: dict[str, Any] = Field(default_factory=dict, description="passed to the policy")
    name: str | None = Field(
        None, description="label in the results; defaults to the policy (or class) name"
    )
    role: str | None = Field(
        None, description="what the group is there for (honest, attacker, opportunist, or your own word); "
        "defaults to the role its policy declares. Results use roles: the honest-only baseline keeps "
        "the honest groups, attack cost counts the attackers"
    )

    @field_validator("role")
    @classmethod
    def _role_syntax(cls, value: str | None) -> str | None:
        return None if value is None else _check_name(value, "role")

    def resolved_role(self) -> str:
        """This group's role: its own `role`, else its policy's (resolving the policy)."""
        from agents.policies.base import group_role

        return group_role(self.policy, self.role)

    @field_validator("policy")
    @classmethod
    def _policy_syntax(cls, value: str) -> str:
        # Only the shape is checked here; whether it resolves is the
        # policy registry's business, at run time.
        if not _POLICY_PATTERN.fullmatch(value):
            raise ValueError(
                f"policy {value!r} must be a registered name like 'honest' or an import "
                "path like 'my_pkg.bots:GreedyBot'"
            )
        return value

    @field_validator("name")
    @classmethod
    def _name_syntax(cls, value: str | None) -> str | None:
        return None if value is None else _check_name(value, "name")

    @model_validator(mode="after")
    def _default_name(self) -> AgentGroup:
        # Filled in here rather than at each use site so results, logs and
        # the dumped scenario all agree on the label.
        if self.name is None:
            self.name = self.policy.rpartition(":")[2]
        return self


class Phase(_Strict):
    """From block `at` (counted from the start of the run) every arrival rate is multiplied by `load`."""

    at: Blocks = Field(ge=0, description="block offset from the start of the run")
    load: float = Field(ge=0, description="multiplier of every group's arrival rate from here on")


def _chaos_union() -> Any:
    # One member per registered chaos event (built-ins and plugins), told apart by `event`.
    members = tuple(chaos_registry.chaos_events().values())
    return Annotated[Union[members], Field(discriminator="event")]  # noqa: UP007 - built at run time


class ScheduleConfig(_Strict):
    duration: Blocks = Field(ge=1, description="length of the run in blocks")
    max_wall_time: DurationS | None = Field(
        None, ge=1, description="stop early after this much real time"
    )
    phases: list[Phase] = Field(default_factory=list, description="load changes over the run")
    chaos: list[_chaos_union()] = Field(  # type: ignore[valid-type]
        default_factory=list, description="chain chaos events (built-in and registered plugins)")
    settle: bool = Field(
        True, description="after the duration, keep the chain going (skipping idle time) until no agent has "
        "anything left it would claim, so no deposit stays locked by the run's end; false: stop at the duration")
    settle_max_blocks: Blocks = Field(
        5_000, ge=1, description="safety cap on settlement: blocks after the duration before the run ends anyway "
        "(ended_because says so)")


class EvaluationConfig(_Strict):
    every: Blocks = Field(10, ge=1, description="evaluate the model every this many blocks")
    test_size: int | None = Field(
        None, ge=1, description="cap on the test samples evaluated (None: all)"
    )
    spot_checks: int = Field(
        5, ge=0, description="samples also predicted by the contract itself"
    )
    baseline: Literal["none", "counterfactual"] = Field(
        "none", description="counterfactual: first run the same scenario and seed with the honest groups only"
    )
    corruption_threshold: float = Field(
        0.05, gt=0, lt=1, description="accuracy drop against the baseline that counts as corrupted"
    )


class OutputsConfig(_Strict):
    dir: str = Field("results", min_length=1)
    progress: bool = True
    bundle: bool = Field(False, description="write a replay bundle (bundle/: the node's initial state and every "
                                            "signed transaction) that `dcai replay` re-executes; managed anvil only")


class Scenario(_Strict):
    name: str = Field(json_schema_extra={"pattern": _NAME_PATTERN})
    description: str = ""
    seed: int = Field(0, ge=0)
    chain: ChainConfig = Field(default_factory=ChainConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    incentive: Annotated[_incentive_union(), BeforeValidator(_default_incentive_type)] = Field(  # type: ignore[valid-type]
        default_factory=_default_incentive, description="the incentive mechanism (built-in or a registered plugin)")
    agents: list[AgentGroup] = Field(min_length=1)
    schedule: ScheduleConfig
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    outputs: OutputsConfig = Field(default_factory=OutputsConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig,
                                       description="live MQTT telemetry and control (docs/telemetry.md)")

    @model_validator(mode="after")
    def _chaos_fits_the_node(self) -> Scenario:
        for ev in self.schedule.chaos:
            ev.check(self)  # the node capabilities it needs, and its own cross-field rules
        return self

    @model_validator(mode="after")
    def _bundle_needs_anvil(self) -> Scenario:
        if self.outputs.bundle and self.chain.rpc_url:
            raise ValueError("outputs.bundle: replay bundles are not supported on an external node (chain.rpc_url): "
                             "its initial state cannot be dumped and reloaded; use a node the run starts (anvil)")
        return self

    @model_validator(mode="after")
    def _model_takes_the_labels(self) -> Scenario:
        if self.dataset.multiclass and self.model.binary_only:
            raise ValueError(
                f"dataset.multiclass: model.type {self.model.type!r} takes two classes only; use naive_bayes, "
                "dense_nearest_centroid or sparse_nearest_centroid, or drop multiclass")
        allowed = mechanism_registry.mechanisms()[self.incentive.type].models
        if allowed is not None and self.model.type not in allowed:
            if self.incentive.type == "prediction_market":
                raise ValueError(
                    f"model.type: the prediction market replays a sparse_perceptron only (its contract reads the "
                    f"perceptron's weights), not a {self.model.type}; use incentive.type stakeable or points")
            raise ValueError(f"model.type: incentive {self.incentive.type!r} supports model types "
                             f"{', '.join(allowed)} only, not {self.model.type!r}")
        return self

    @field_validator("name")
    @classmethod
    def _name_syntax(cls, value: str) -> str:
        return _check_name(value, "name")

    @field_validator("agents")
    @classmethod
    def _unique_group_names(cls, groups: list[AgentGroup]) -> list[AgentGroup]:
        # Results are keyed by group name; two groups with one name would merge.
        first_seen: dict[str | None, int] = {}
        for i, group in enumerate(groups):
            if group.name in first_seen:
                raise ValueError(
                    f"agents[{i}] has the same name {group.name!r} as "
                    f"agents[{first_seen[group.name]}]; give one of them a distinct 'name:'"
                )
            first_seen[group.name] = i
        return groups


def _rebuild_unions() -> None:
    """A chaos event or mechanism registered after import (a plugin, a test) joins the schema."""
    ScheduleConfig.model_fields["chaos"].annotation = list[_chaos_union()]  # type: ignore[misc]
    Scenario.model_fields["incentive"].annotation = _incentive_union()
    ScheduleConfig.model_rebuild(force=True)
    Scenario.model_rebuild(force=True)


chaos_registry.on_change(_rebuild_unions)
mechanism_registry.on_change(_rebuild_unions)

# Union members by discriminator, for error locations: pydantic puts the member's tag into the
# location (`schedule.chaos[0].base_fee_shock.factor`), which is not a key of the file.
_UNIONS: dict[str, tuple[str, Any]] = {
    "chaos": ("event", chaos_registry.chaos_events),
    "incentive": ("type", lambda: {n: m.config_cls for n, m in mechanism_registry.mechanisms().items()}),
}


def _strip_union_tags(loc: Loc, data: Any) -> Loc:
    out: list[str | int] = []
    node = data
    owner: str | None = None  # the union whose member's tag may come next in `loc`
    for part in loc:
        if owner is not None and isinstance(node, dict) and part not in node \
                and part == node.get(_UNIONS[owner][0], "stakeable" if owner == "incentive" else None):
            owner = None
            continue
        owner = None
        out.append(part)
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
        if part == "incentive" and len(out) == 1:
            owner = "incentive"
        elif isinstance(part, int) and out[-2:-1] == ["chaos"]:
            owner = "chaos"
    return tuple(out)


def scenario_json_schema() -> dict[str, Any]:
    """JSON schema of a scenario file (for editors and documentation)."""
    return Scenario.model_json_schema()


# --------------------------------------------------------------------------
# Errors


@dataclass(frozen=True)
class ScenarioIssue:
    """One problem in a scenario file. line and column are 1-based."""

    location: str  # e.g. "agents[1].rate"; "" for the file as a whole
    line: int | None
    column: int | None
    message: str

    def format(self, path: str) -> str:
        where = path
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        if self.location:
            return f"{where}: {self.location}: {self.message}"
        return f"{where}: {self.message}"


class ScenarioError(Exception):
    """A scenario file could not be loaded; `issues` lists every problem found."""

    def __init__(self, path: str, issues: list[ScenarioIssue]) -> None:
        # Passing both to Exception keeps the error picklable (it may cross
        # process boundaries).
        super().__init__(path, issues)
        self.path = path
        self.issues = sorted(issues, key=lambda i: (i.line or 0, i.column or 0))

    def __str__(self) -> str:
        return "\n".join(issue.format(self.path) for issue in self.issues)


# --------------------------------------------------------------------------
# Loader

Loc = tuple[str | int, ...]

_MERGE_TAG = "tag:yaml.org,2002:merge"
_NULL_TAG = "tag:yaml.org,2002:null"
_REQUIRED_KEYS = ", ".join(
    name for name, field in Scenario.model_fields.items() if field.is_required()
)


def load_scenario(path: str | Path) -> Scenario:
    """Load and validate a scenario file; raises ScenarioError on any problem."""
    shown = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _error(shown, f"file not found (looked for {Path(path).absolute()})") from None
    except IsADirectoryError:
        raise _error(shown, "is a directory, not a scenario file") from None
    except UnicodeDecodeError as exc:
        raise _error(shown, f"not UTF-8 text (bad byte at offset {exc.start})") from None
    except OSError as exc:
        raise _error(shown, f"cannot read file: {exc.strerror or exc}") from None
    return load_scenario_text(text, source=shown)


def compose_yaml(text: str, source: str) -> tuple[Node | None, Any]:
    """The YAML document's root node (kept for line numbers) and its data. Syntax errors and repeated
    keys raise ScenarioError naming `source`, line and column; an empty document gives (None, None)."""
    try:
        # The reader checks for unprintable characters right away.
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(source, [_yaml_issue(exc, text)]) from None
    try:
        try:
            root = loader.get_single_node()
        except yaml.YAMLError as exc:
            raise ScenarioError(source, [_yaml_issue(exc, text)]) from None
        if root is None:
            return None, None
        # PyYAML lets a repeated key silently overwrite the first one, so
        # this has to look at the nodes before they become a dict.
        duplicates = _duplicate_keys(root)
        if duplicates:
            raise ScenarioError(source, duplicates)
        try:
            return root, loader.construct_document(root)
        except yaml.YAMLError as exc:
            raise ScenarioError(source, [_yaml_issue(exc, text)]) from None
    finally:
        loader.dispose()


def load_scenario_text(text: str, source: str = "<string>") -> Scenario:
    """Validate a scenario given as YAML text; `source` names it in errors."""
    root, data = compose_yaml(text, source)
    if root is None or (isinstance(root, ScalarNode) and root.tag == _NULL_TAG):
        message = f"the file has no content; expected a mapping with at least {_REQUIRED_KEYS}"
        raise _error(source, message)
    if not isinstance(root, MappingNode):
        kind = "a list" if isinstance(root, SequenceNode) else f"the value {root.value!r}"
        line, column = _position(root.start_mark)
        message = (
            f"the top level must be a mapping of keys ({_REQUIRED_KEYS}, ...), got {kind}"
        )
        raise ScenarioError(source, [ScenarioIssue("", line, column, message)])

    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        # Constructing expanded `<<` merge keys inside the nodes, so merged-in
        # keys can be located too.
        issues = [_pydantic_issue(err, root, data) for err in exc.errors()]
        # `from None`: the chained pydantic error would repeat raw inputs,
        # which may include values the messages deliberately leave out.
        raise ScenarioError(source, issues) from None


def _error(source: str, message: str) -> ScenarioError:
    return ScenarioError(source, [ScenarioIssue("", None, None, message)])


def _position(mark: Mark | None) -> tuple[int | None, int | None]:
    if mark is None:
        return None, None
    return mark.line + 1, mark.column + 1


def _yaml_issue(exc: yaml.YAMLError, text: str) -> ScenarioIssue:
    if isinstance(exc, MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.problem and exc.context:
            context = exc.context
            if exc.context_mark is not None:
                context += f" on line {exc.context_mark.line + 1}"
            # PyYAML splits some sentences as context="expected X",
            # problem="but found Y"; keep those in reading order.
            if exc.problem.startswith("but "):
                problem = f"{context}, {exc.problem}"
            else:
                problem = f"{exc.problem} ({context})"
        line, column = _position(mark)
        return ScenarioIssue("", line, column, f"YAML syntax error: {problem}")
    if isinstance(exc, yaml.reader.ReaderError):
        # Reader errors (e.g. control characters) carry an offset, not a mark.
        before = text[: exc.position]
        line = before.count("\n") + 1
        column = exc.position - (before.rfind("\n") + 1) + 1
        return ScenarioIssue("", line, column, f"YAML syntax error: {exc.reason}")
    return ScenarioIssue("", None, None, "YAML syntax error: " + " ".join(str(exc).split()))


def _format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def _key_of(node: Node) -> str | None:
    # Only scalar keys can name a field; complex keys are left to pydantic.
    return node.value if isinstance(node, ScalarNode) else None


def _duplicate_keys(
    node: Node, loc: Loc = (), active: frozenset[int] = frozenset()
) -> list[ScenarioIssue]:
    # `active` guards against aliases that make the node graph recursive.
    if id(node) in active:
        return []
    active = active | {id(node)}
    issues: list[ScenarioIssue] = []
    if isinstance(node, MappingNode):
        first: dict[tuple[str, str], Mark] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue  # merged mappings are anchored, and checked, elsewhere
            key = _key_of(key_node)
            if key is None:
                continue
            child = loc + (key,)
            # The tag is part of the identity: `1:` and `"1":` differ.
            ident = (key_node.tag, key)
            if ident in first:
                line, column = _position(key_node.start_mark)
                message = (
                    f"duplicate key {key!r} (first defined on line {first[ident].line + 1}, "
                    f"again on line {line})"
                )
                issues.append(ScenarioIssue(_format_loc(child), line, column, message))
            else:
                first[ident] = key_node.start_mark
            issues += _duplicate_keys(value_node, child, active)
    elif isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            issues += _duplicate_keys(item, loc + (i,), active)
    # An alias used twice would report the same duplicate twice.
    return list(dict.fromkeys(issues))


def _locate(root: Node, loc: Loc) -> tuple[int, Mark, Node]:
    """Follow `loc` through the node tree as far as the file has it.

    Returns how many parts of `loc` were found, the mark to report (the key
    of the last mapping entry found, or the node itself for list items and
    the root) and the node found.
    """
    node, mark, depth = root, root.start_mark, 0
    for part in loc:
        if isinstance(node, MappingNode):
            # Keys compare as text so that pydantic's `1` finds a YAML `1:`;
            # the last match wins, as it does in the constructed dict.
            matches = [(k, v) for k, v in node.value if _key_of(k) == str(part)]
            if not matches:
                break
            key_node, node = matches[-1]
            mark = key_node.start_mark
        elif isinstance(node, SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            mark = node.start_mark
        else:
            break
        depth += 1
    return depth, mark, node


_MISSING = object()


def _value_at(data: Any, loc: Loc) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return data


def _model_at(loc: Loc) -> type[BaseModel] | None:
    model: type[BaseModel] | None = Scenario
    for part in loc:
        if isinstance(part, int):
            continue  # list index: same model as the list's items
        if model is None or part not in model.model_fields:
            return None
        model = _model_in(model.model_fields[part].annotation)
    return model


def _union_member_at(loc: Loc, data: Any) -> type[BaseModel] | None:
    """The registered class a chaos event or incentive section at `loc` was validated as."""
    owner = next((p for p in reversed(loc) if isinstance(p, str)), None)
    if owner not in _UNIONS:
        return None
    key, members = _UNIONS[owner]
    value = _value_at(data, loc)
    if not isinstance(value, dict):
        return None
    tag = value.get(key, "stakeable" if owner == "incentive" else None)
    return members().get(tag) if isinstance(tag, str) else None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if get_origin(annotation) is None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation
        return None
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _short_repr(value: Any) -> str | None:
    if value is None or isinstance(value, (bool, int, float, str)) or value in ([], {}):
        text = repr(value)
        if len(text) <= 40:
            return text
    return None


def _pydantic_issue(err: Any, root: Node, data: Any) -> ScenarioIssue:
    loc: Loc = _strip_union_tags(tuple(err["loc"]), data)
    kind: str = err["type"]
    bad_key = kind == "invalid_key" or loc[-1:] == ("[key]",)
    if loc[-1:] == ("[key]",):
        loc = loc[:-1]

    # Point at the deepest part of the path that exists in the file: the
    # key itself, or for a missing key the mapping that should contain it.
    depth, mark, node = _locate(root, loc)
    value_error = kind != "extra_forbidden" and not bad_key
    if value_error and depth == len(loc) and isinstance(node, ScalarNode):
        mark = node.start_mark  # a bad value: point at the value, not its key
    line, column = _position(mark)

    if bad_key:
        # Reported on the mapping, since `[1]` would read as a list index.
        message = f"key {loc[-1]!r} must be text; put it in quotes"
        return ScenarioIssue(_format_loc(loc[:-1]), line, column, message)
    if kind == "missing":
        message = "required key is missing"
    elif kind == "extra_forbidden":
        message = _unknown_key_message(loc, data)
    elif kind == "value_error":
        # Our validators already quote the value where that is safe to do.
        message = err["msg"].removeprefix("Value error, ")
    else:
        message = err["msg"]
        raw = _value_at(data, loc)
        got = _short_repr(raw if raw is not _MISSING else err.get("input"))
        # Never echo anything under a key-ish name: it may be a secret.
        if got is not None and not any("key" in str(part) for part in loc):
            message += f" (got {got})"
    return ScenarioIssue(_format_loc(loc), line, column, message)


def _unknown_key_message(loc: Loc, data: Any = None) -> str:
    key = str(loc[-1])
    model = _union_member_at(loc[:-1], data) or _model_at(loc[:-1])
    if model is None:
        return f"unknown key {key!r}"
    allowed = list(model.model_fields)
    message = f"unknown key {key!r} (allowed: {', '.join(allowed)})"
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        message += f"; did you mean {close[0]!r}?"
    return message
