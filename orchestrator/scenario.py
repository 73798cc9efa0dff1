"""Scenario files: the schema (pydantic models) and their loader.

A scenario is written by hand, so every mistake should be reported once, in
terms of the file: `scenarios/x.yaml:12:5: agents[0].count: ...`. The YAML is
read by `orchestrator.yaml_loader` (nodes that remember their line, with size,
depth and alias limits), and `orchestrator.scenario_locate` maps each pydantic
error back onto those nodes. Checks that look outside the file (dataset files,
the output folder, policies) are in `orchestrator.prechecks`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from contracts.rpc import redact_url
from orchestrator.issues import ScenarioError, ScenarioIssue, quote
from orchestrator.scenario_locate import field_error
from orchestrator.scenario_types import (
    BUNDLED_SAMPLES,
    MAX_CHAIN_ID,
    MAX_SEED,
    Blocks,
    DurationS,
    Gas,
    Rate,
    StrictModel,
    Wei,
    agents_shortfall,
    ENV_NAME_PATTERN as _ENV_NAME_PATTERN,
    HEX_KEY_PATTERN as _HEX_KEY_PATTERN,
    NAME_PATTERN as _NAME_PATTERN,
    POLICY_PATTERN as _POLICY_PATTERN,
    check_name,
)
from orchestrator import chaos as chaos_registry
from orchestrator import mechanisms as mechanism_registry
from orchestrator.chaos import ChaosEvent
from orchestrator.mechanisms import IncentiveConfig
from orchestrator.nodes import NodeError, managed_kinds, node_kind
from orchestrator.nodes.fit import misfits
from orchestrator.telemetry_config import TelemetryConfig
from orchestrator.units import ETHER, GWEI
from orchestrator.yaml_loader import compose_yaml

__all__ = [
    "AgentGroup", "ChaosEvent", "error_loc", "scenario_issue", "ChainConfig", "DatasetConfig",
    "EvaluationConfig", "IncentiveConfig", "ModelConfig", "OutputsConfig", "Scenario", "ScenarioError",
    "ScenarioIssue", "ScheduleConfig", "load_scenario", "load_scenario_text", "StrictModel", "check_name",
    "compose_yaml", "scenario_json_schema"
]


_Strict = StrictModel  # the name the sections of this file use
_check_name = check_name


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
    chain_id: int = Field(31337, ge=1, le=MAX_CHAIN_ID, description="managed node's chain id (EIP-155; at most "
                          "2**63 - 37, EIP-2294)")
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
    node: str = Field(
        "anvil", description="the kind of node the run starts when rpc_url is not set: 'anvil' or 'hardhat' "
        "(or an installed plugin's, entry point group dcai.nodes); docs/architecture.md#node-kinds")


    @field_validator("rpc_url")
    @classmethod
    def _rpc_url_scheme(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and not value:
            raise ValueError("rpc_url: the list of endpoints is empty")
        for url in [value] if isinstance(value, str) else value or []:
            if not re.match(r"(?i)(https?|wss?)://.", url):
                # Redacted: a mistyped URL may still carry a password.
                raise ValueError(f"rpc_url {quote(redact_url(url))} must be an http(s):// or ws(s):// URL")
        return value

    @field_validator("node")
    @classmethod
    def _node_kind_known(cls, value: str, info: ValidationInfo) -> str:
        try:
            kind = node_kind(value)
        except NodeError as e:
            raise ValueError(str(e)) from None
        if not kind.managed:
            raise ValueError(f"node {value!r}: give an external node's URL as chain.rpc_url; chain.node picks "
                             f"a node the run starts ({', '.join(managed_kinds())})")
        if value != "anvil" and info.data.get("rpc_url"):
            raise ValueError("node: chain.rpc_url is set, so the run starts no node; remove one of the two")
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


# The shipped families' names, for callers that list them; scenarios accept every registered
# family (contracts.families, plugins included), so check membership with the registry instead.
MODEL_TYPES = ("sparse_perceptron", "dense_perceptron", "naive_bayes", "dense_nearest_centroid",
               "sparse_nearest_centroid")
BINARY_MODELS = ("sparse_perceptron", "dense_perceptron")  # one weight vector: two classes only
PERCEPTRONS = BINARY_MODELS
_MODEL_OPTIONS = ("learning_rate", "intercept", "smoothing", "averaging")


def _model_family(name: str) -> Any:
    from contracts.families import get

    return get(name)


class _ModelTypeSchema:
    """`model.type` in the JSON schema: the registered families at the time the schema is made."""

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        from contracts.families import families

        kinds = families()
        return {"type": "string", "enum": [f.name for f in kinds] + [a for f in kinds for a in f.aliases],
                "default": "sparse_perceptron",
                "description": "the model family: " + "; ".join(
                    f"{f.name} ({f.description or f.contract})" for f in kinds)
                + ". Older spellings: " + ", ".join(f"{a!r} for {f.name}" for f in kinds for a in f.aliases)}


class ModelConfig(_Strict):
    type: Annotated[str, _ModelTypeSchema()] = "sparse_perceptron"
    # None means "not given": an option given for a model that has no use for it is a mistake worth
    # reporting, so defaults are filled in only for the families that declare them.
    learning_rate: float | None = Field(None, gt=0, description="perceptrons: step of an update (default 0.5)")
    intercept: float | None = Field(None, description="perceptrons: fixed intercept, never trained (default 0)")
    smoothing: float | None = Field(
        None, gt=0, description="naive_bayes: additive smoothing of the counts, 1 = Laplace (default 1)")
    averaging: float | None = Field(
        None, description="sparse_perceptron: 0 = plain perceptron (default); N > 0 = averaged perceptron, "
        "predicting with the mean weights over all updates, the deployed weights counting as N updates "
        "(resists label-flipped contributions; see SparsePerceptron.sol)")

    @field_validator("type")
    @classmethod
    def _known_family(cls, value: str) -> str:
        # One place maps spellings: the registry (canonical names and each family's aliases).
        try:
            return str(_model_family(value).name)
        except ValueError as e:
            raise ValueError(str(e)) from None

    @field_validator("averaging")
    @classmethod
    def _whole_count(cls, value: float | None) -> float | None:
        if value is not None and not (value >= 0 and value <= 2**64 and value == int(value)):
            raise ValueError(f"must be a whole number of updates from 0 (off) to 2**64, got {value:g}")
        return value

    @field_validator("learning_rate", "intercept", "smoothing", "averaging")
    @classmethod
    def _option_applies(cls, value: float | None, info: ValidationInfo) -> float | None:
        kind = info.data.get("type")
        if value is None or kind is None:
            return value
        from contracts.families import families

        if info.field_name not in _model_family(kind).options:
            owners = [f.name for f in families() if info.field_name in f.options]
            raise ValueError(f"{info.field_name} applies to {' and '.join(owners) or 'no model type'} only, "
                             f"not to model type {kind!r}; remove it")
        return value

    @model_validator(mode="after")
    def _defaults_of_the_type(self) -> ModelConfig:
        for option, default in _model_family(self.type).options.items():
            if option in _MODEL_OPTIONS and getattr(self, option) is None:
                setattr(self, option, float(default))
        return self

    def family_options(self) -> dict[str, float]:
        """The options the family takes, with their values (defaults filled in)."""
        return {o: getattr(self, o) if o in _MODEL_OPTIONS else float(d)
                for o, d in _model_family(self.type).options.items()}

    @property
    def binary_only(self) -> bool:
        return bool(_model_family(self.type).binary_only)

    @property
    def dense(self) -> bool:
        return bool(_model_family(self.type).dense)


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
    samples: int = Field(2000, ge=20, le=10_000_000, description="synthetic_sparse: samples generated")
    features: int = Field(1000, ge=2, le=10_000_000, description="vocabulary size (synthetic_sparse)")
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
            raise field_error(("name",), f"dataset {self.name!r} needs 'path': the file to read")
        if self.path is not None and self.name not in ("csv", "libsvm"):
            raise field_error(("path",), f"path is read for the csv and libsvm datasets only, not {self.name!r}; "
                              "set name: csv or libsvm, or remove path")
        return self

    @model_validator(mode="after")
    def _length_fits_vocabulary(self) -> DatasetConfig:
        if self.name == "synthetic_sparse" and self.avg_length > self.features // 2:
            raise field_error(("avg_length",), f"avg_length {self.avg_length} exceeds half the vocabulary "
                              f"(features {self.features}): samples are cut to {self.features // 2} features; "
                              "lower avg_length or raise features")
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
            blamed = "test_fraction" if "test_fraction" in self.model_fields_set else "init_train_fraction"
            raise field_error((blamed,), 
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
                f"policy {quote(value)} must be a registered name like 'honest' or an import "
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
    dir: str = Field("results", min_length=1, description="results root; each run writes a folder in it")

    @field_validator("dir")
    @classmethod
    def _dir_syntax(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("outputs.dir is blank; name a folder (default: results)")
        if "\0" in value:
            raise ValueError("outputs.dir contains a NUL character")
        return value

    progress: bool = True
    bundle: bool = Field(False, description="write a replay bundle (bundle/: the node's initial state and every "
                                            "signed transaction) that `dcai replay` re-executes; managed anvil only")


class Scenario(_Strict):
    name: str = Field(json_schema_extra={"pattern": _NAME_PATTERN})
    description: str = ""
    seed: int = Field(0, ge=0, le=MAX_SEED, description="seeds every random choice of the run (0 .. 2**32 - 1)")
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
        problems: dict[str, int] = {}  # every event's problem at once, each at the first event it hits
        for i, ev in enumerate(self.schedule.chaos):
            try:
                ev.check(self)  # the node capabilities it needs, and its own cross-field rules
            except ValueError as e:
                problems.setdefault(str(e).removeprefix("schedule.chaos: "), i)
        if problems:
            where = "" if self.chain.rpc_url else f"chain.node {self.chain.node!r}: "
            raise field_error(("schedule", "chaos", min(problems.values()), "event"), where + "; ".join(problems))
        return self

    @model_validator(mode="after")
    def _fits_the_node_kind(self) -> Scenario:
        if not self.chain.rpc_url:
            problems = misfits(self.chain.node, bundle=self.outputs.bundle, prune_history=self.chain.prune_history is not None,
                               driven=self.chain.mining == "driven")
            if problems:
                raise ValueError(f"chain.node {self.chain.node!r}: " + "; ".join(problems))
        return self

    @model_validator(mode="after")
    def _bundle_needs_anvil(self) -> Scenario:
        if self.outputs.bundle and self.chain.rpc_url:
            raise field_error(("outputs", "bundle"), "replay bundles are not supported on an external node "
                              "(chain.rpc_url): its initial state cannot be dumped and reloaded; use a node the run "
                              "starts (anvil)")
        return self

    @model_validator(mode="after")
    def _model_takes_the_labels(self) -> Scenario:
        if self.dataset.multiclass and self.model.binary_only:
            blamed = ("model", "type") if "type" in self.model.model_fields_set else ("dataset", "multiclass")
            raise field_error(blamed, f"model.type {self.model.type!r} takes two classes only, and dataset.multiclass "
                              "keeps them all; use naive_bayes, dense_nearest_centroid or sparse_nearest_centroid, or "
                              "drop multiclass")
        allowed = mechanism_registry.mechanisms()[self.incentive.type].models
        if allowed is not None and self.model.type not in allowed:
            if self.incentive.type == "prediction_market":
                raise field_error(
                    ("model", "type"),
                    f"the prediction market replays a sparse_perceptron only (its contract reads the "
                    f"perceptron's weights), not a {self.model.type}; use incentive.type stakeable or points")
            raise field_error(("model", "type"), f"incentive {self.incentive.type!r} supports model types "
                              f"{', '.join(allowed)} only, not {self.model.type!r}")
        if self.incentive.type == "prediction_market" and self.model.averaging:
            raise field_error(("model", "averaging"), "the prediction market replays the plain perceptron's "
                              "fixed-step rule; an averaged model (averaging > 0) cannot be replayed: set 0 "
                              "or use incentive.type stakeable or points")
        return self

    @model_validator(mode="after")
    def _events_inside_the_schedule(self) -> Scenario:
        # Generic over event kinds: every event and phase has `at`, a block offset from the start.
        duration = self.schedule.duration
        for section in ("chaos", "phases"):
            for i, item in enumerate(getattr(self.schedule, section)):
                at = getattr(item, "at", None)
                if isinstance(at, int) and at >= duration:
                    raise field_error(("schedule", section, i, "at"), f"block {at} is not inside the schedule "
                                      f"(duration {duration} blocks: offsets 0 .. {duration - 1}); it would never "
                                      "happen")
        return self

    @model_validator(mode="after")
    def _enough_samples_for_the_agents(self) -> Scenario:
        ds = self.dataset
        n = ds.samples if ds.name == "synthetic_sparse" else BUNDLED_SAMPLES.get(ds.name)
        if n is None:
            return self  # a user's file: counted by orchestrator.prechecks
        short = agents_shortfall(self, n, "dataset.samples" if ds.name == "synthetic_sparse" else f"the {ds.name} set")
        if short is not None:
            raise field_error(*short)
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


def scenario_json_schema() -> dict[str, Any]:
    """JSON schema of a scenario file (for editors and documentation)."""
    return Scenario.model_json_schema()


# Loading lives in orchestrator/scenario_load.py; these names stay importable from here.
from orchestrator.scenario_load import error_loc, load_scenario, load_scenario_text, scenario_issue  # noqa: E402
