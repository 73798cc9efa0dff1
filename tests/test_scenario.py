"""Scenario schema, loader error reporting, and the unit parsers."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest

from orchestrator.scenario import (
    Scenario,
    ScenarioError,
    ScenarioIssue,
    load_scenario,
    load_scenario_text,
    scenario_json_schema,
)
from orchestrator.units import (
    parse_blocks,
    parse_duration_s,
    parse_gas,
    parse_rate,
    parse_wei,
)

BAD_DIR = Path(__file__).parent / "scenarios_bad"
BAD_FILES = sorted(BAD_DIR.glob("*.yaml"))

ETHER = 10**18
DAY = 86_400

MINIMAL = """\
name: minimal
agents:
  - policy: honest
    count: 2
schedule:
  duration: 100
"""

FULL = """\
name: full-demo_1.0
description: every section set explicitly
seed: 7
chain:
  mining: driven
  block_time: 2s
  gas_limit: 15 M
  base_fee: 2 gwei
  accounts: 20
  balance: 1000 ether
  chain_id: 1337
  order: fifo
model:
  type: sparse perceptron
  learning_rate: 0.25
  intercept: -1
dataset:
  name: breast_cancer
  samples: 569
  features: 30
  avg_length: 30
  noise: 0
  init_train_fraction: 0.1
  test_fraction: 0.3
incentive:
  type: stakeable
  cost_weight: 1e15
  refund_wait: 1d
  owner_claim_wait: 1w
  any_address_claim_wait: 9 days
agents:
  - policy: honest
    count: 3
    funding: 10 ether
    rate: 2/min
  - policy: my_pkg.bots:GreedyBot
    name: greedy
    count: 2
    funding: 0.1 ether
    samples_per_agent: 40
    rate: 12/h
    params: {greed: 0.9, targets: [1, 2]}
  - policy: my_pkg.bots:Spammer
    count: 1
schedule:
  duration: 600 blocks
  max_wall_time: 10 minutes
evaluation:
  every: 20 blocks
  test_size: 100
  spot_checks: 0
outputs:
  dir: out
  progress: false
"""


def _errors(text: str, source: str = "s.yaml") -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load_scenario_text(text, source)
    return info.value


# --------------------------------------------------------------------------
# Malformed files: each names the location and line it must be reported at.

_EXPECT = re.compile(r"#\s*expect:\s*(?P<loc>\S+)\s*@\s*(?P<line>\d+|-)\s*$")
_SAYS = re.compile(r"#\s*says:\s*(?P<text>.+?)\s*$")


def _expectation(path: Path) -> tuple[str, int | None, str | None]:
    lines = path.read_text(encoding="utf-8").splitlines()
    match = _EXPECT.match(lines[0]) if lines else None
    assert match, f"{path.name}: first line must be '# expect: <location> @ <line>'"
    location = "" if match["loc"] == "-" else match["loc"]
    line = None if match["line"] == "-" else int(match["line"])
    says = _SAYS.match(lines[1]) if len(lines) > 1 else None
    return location, line, says["text"] if says else None


def test_there_are_enough_bad_fixtures() -> None:
    assert len(BAD_FILES) >= 30


@pytest.mark.parametrize("path", BAD_FILES, ids=[p.stem for p in BAD_FILES])
def test_bad_scenario_is_reported_at_its_location(path: Path) -> None:
    location, line, says = _expectation(path)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    err = info.value
    assert err.path == str(path)
    rendered = str(err)
    hits = [i for i in err.issues if i.location == location and i.line == line]
    assert hits, f"expected an issue at {location or '<file>'} line {line}, got:\n{rendered}"
    if says is not None:
        assert any(says in i.message for i in hits), f"{says!r} not in:\n{rendered}"
    # The rendered form carries the same facts, one issue per line.
    assert len(rendered.splitlines()) == len(err.issues)
    prefix = f"{path}:{line}" if line is not None else f"{path}:"
    assert any(
        text.startswith(prefix) and (f": {location}: " in text if location else True)
        for text in rendered.splitlines()
    ), rendered


# --------------------------------------------------------------------------
# Error details


def test_error_line_format() -> None:
    text = MINIMAL.replace("count: 2", "count: 0")
    err = _errors(text, "scenarios/x.yaml")
    assert str(err) == (
        "scenarios/x.yaml:4:12: agents[0].count: "
        "Input should be greater than or equal to 1 (got 0)"
    )
    assert err.issues == [
        ScenarioIssue(
            "agents[0].count", 4, 12, "Input should be greater than or equal to 1 (got 0)"
        )
    ]


def test_unknown_key_lists_allowed_keys_and_points_at_key() -> None:
    text = MINIMAL + "chain:\n  accounts: 3\n  blok_time: 2\n"
    (issue,) = _errors(text).issues
    assert issue.location == "chain.blok_time"
    assert (issue.line, issue.column) == (9, 3)
    assert issue.message.startswith(
        "unknown key 'blok_time' (allowed: rpc_url, mining, block_time, gas_limit,"
    )
    assert "did you mean 'block_time'?" in issue.message


def test_every_problem_is_reported_in_line_order() -> None:
    text = """\
name: many
chain: {block_time: 0}
agents:
  - policy: honest
    count: 0
  - policy: honest bot
    count: 1
    rate: 2/fortnight
schedule: {}
"""
    err = _errors(text)
    assert [(i.location, i.line) for i in err.issues] == [
        ("chain.block_time", 2),
        ("agents[0].count", 5),
        ("agents[1].policy", 6),
        ("agents[1].rate", 8),
        ("schedule.duration", 9),
    ]


def test_duplicate_key_mentions_both_lines() -> None:
    text = MINIMAL + "seed: 1\nseed: 2\n"
    (issue,) = _errors(text).issues
    assert issue.location == "seed"
    assert issue.line == 8
    assert "first defined on line 7" in issue.message
    assert "again on line 8" in issue.message


def test_merge_keys_are_not_duplicates_and_are_located() -> None:
    text = """\
name: merged
agents:
  - &honest {policy: honest, count: 2}
  - <<: *honest
    name: honest-2
    count: 0
schedule: {duration: 10}
"""
    (issue,) = _errors(text).issues
    assert (issue.location, issue.line) == ("agents[1].count", 6)


def test_merge_keys_load() -> None:
    text = MINIMAL + "  - <<: {policy: greedy, count: 4}\n    name: g2\n"
    text = text.replace("schedule:\n  duration: 100\n", "") + "schedule: {duration: 1}\n"
    scenario = load_scenario_text(text)
    assert [(g.name, g.count) for g in scenario.agents] == [("honest", 2), ("g2", 4)]


def test_missing_file() -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario("does/not/exist.yaml")
    message = str(info.value)
    assert message.startswith("does/not/exist.yaml: file not found")
    assert "exist.yaml" in message.split("file not found", 1)[1]


def test_directory_is_not_a_scenario(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="is a directory"):
        load_scenario(tmp_path)


def test_yaml_syntax_error_has_line_and_column() -> None:
    (issue,) = _errors("name: x\nseed: 1: 2\n").issues
    assert (issue.location, issue.line, issue.column) == ("", 2, 8)
    assert issue.message.startswith("YAML syntax error: mapping values are not allowed")


def test_unprintable_character_is_a_syntax_error() -> None:
    (issue,) = _errors("name: x\nseed: 1\x07\n").issues
    assert issue.line == 2
    assert "YAML syntax error" in issue.message


def test_non_string_keys_are_reported_on_their_mapping() -> None:
    text = MINIMAL.replace("count: 2", "count: 2\n    params: {3: x}")
    (issue,) = _errors(text).issues
    assert (issue.location, issue.line) == ("agents[0].params", 5)
    assert "key 3 must be text" in issue.message


def test_private_key_is_never_echoed() -> None:
    key = "0x" + "ab" * 32
    for value in (f'"{key}"', key):  # quoted string, and YAML's hex integer
        text = MINIMAL + f"chain:\n  rpc_url: http://127.0.0.1:8545\n  funder_key_env: {value}\n"
        err = _errors(text)
        assert [i.location for i in err.issues] == ["chain.funder_key_env"]
        assert "ab" * 32 not in str(err)
        assert str(int(key, 16)) not in str(err)


def test_error_is_picklable() -> None:
    err = _errors(MINIMAL.replace("count: 2", "count: 0"))
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.path, copy.issues, str(copy)) == (err.path, err.issues, str(err))


def test_error_without_location_or_line_formats_cleanly() -> None:
    err = ScenarioError("a.yaml", [ScenarioIssue("", None, None, "boom")])
    assert str(err) == "a.yaml: boom"
    err = ScenarioError("a.yaml", [ScenarioIssue("seed", 3, None, "bad")])
    assert str(err) == "a.yaml:3: seed: bad"


# --------------------------------------------------------------------------
# Good scenarios


def test_minimal_scenario_gets_defaults() -> None:
    s = load_scenario_text(MINIMAL)
    assert s.name == "minimal"
    assert s.seed == 0
    assert s.chain.rpc_url is None
    assert s.chain.mining == "interval"
    assert s.chain.block_time == 1
    assert s.chain.gas_limit == 30_000_000
    assert s.chain.base_fee == 10**9
    assert s.chain.accounts == 10
    assert s.chain.balance == 1_000_000 * ETHER
    assert s.chain.chain_id == 31337
    assert s.chain.order == "fees"
    assert s.model.type == "sparse_perceptron"  # the old spelling "sparse perceptron" is normalised to this
    assert s.model.learning_rate == 0.5
    assert s.dataset.name == "synthetic_sparse"
    assert (s.dataset.samples, s.dataset.features, s.dataset.avg_length) == (2000, 1000, 20)
    assert (s.dataset.init_train_fraction, s.dataset.test_fraction) == (0.08, 0.2)
    assert s.incentive.cost_weight == 10**12
    assert s.incentive.refund_wait == DAY
    assert s.incentive.owner_claim_wait == 8 * DAY
    assert s.incentive.any_address_claim_wait == 9 * DAY
    (group,) = s.agents
    assert (group.policy, group.count, group.name) == ("honest", 2, "honest")
    assert group.funding == 10 * ETHER
    assert group.rate == 0.05
    assert group.samples_per_agent is None
    assert group.params == {}
    assert s.schedule.duration == 100
    assert s.schedule.max_wall_time is None
    assert (s.evaluation.every, s.evaluation.test_size, s.evaluation.spot_checks) == (10, None, 5)
    assert (s.outputs.dir, s.outputs.progress) == ("results", True)


def test_full_scenario_values(tmp_path: Path) -> None:
    path = tmp_path / "full.yaml"
    path.write_text(FULL, encoding="utf-8")
    s = load_scenario(path)
    assert s.description == "every section set explicitly"
    assert s.seed == 7
    assert s.chain.mining == "driven"
    assert s.chain.block_time == 2
    assert s.chain.gas_limit == 15_000_000
    assert s.chain.base_fee == 2 * 10**9
    assert s.chain.balance == 1000 * ETHER
    assert (s.chain.accounts, s.chain.chain_id, s.chain.order) == (20, 1337, "fifo")
    assert (s.model.learning_rate, s.model.intercept) == (0.25, -1.0)
    assert s.dataset.name == "breast_cancer"
    assert s.dataset.noise == 0
    assert s.incentive.cost_weight == 10**15
    assert s.incentive.refund_wait == DAY
    assert s.incentive.owner_claim_wait == 7 * DAY
    assert s.incentive.any_address_claim_wait == 9 * DAY
    honest, greedy, spammer = s.agents
    assert honest.funding == 10 * ETHER
    assert honest.rate == pytest.approx(2 / 60)
    assert greedy.name == "greedy"
    assert greedy.funding == 10**17
    assert greedy.samples_per_agent == 40
    assert greedy.rate == pytest.approx(12 / 3600)
    assert greedy.params == {"greed": 0.9, "targets": [1, 2]}
    assert spammer.name == "Spammer"  # the class name of an import path
    assert s.schedule.duration == 600
    assert s.schedule.max_wall_time == 600
    assert (s.evaluation.every, s.evaluation.test_size, s.evaluation.spot_checks) == (20, 100, 0)
    assert (s.outputs.dir, s.outputs.progress) == ("out", False)


def test_round_trip_through_plain_data() -> None:
    s = load_scenario_text(FULL)
    data = s.model_dump(mode="json")
    assert data["agents"][0]["funding"] == 10 * ETHER
    assert data["incentive"]["refund_wait"] == DAY
    assert data["chain"]["gas_limit"] == 15_000_000
    assert Scenario.model_validate(data) == s
    assert Scenario.model_validate_json(s.model_dump_json()) == s


def test_rpc_url_with_interval_mining_is_fine() -> None:
    text = MINIMAL + "chain:\n  rpc_url: http://127.0.0.1:8545\n  funder_key_env: FUNDER_KEY\n"
    s = load_scenario_text(text)
    assert s.chain.rpc_url == "http://127.0.0.1:8545"
    assert s.chain.mining == "interval"
    assert s.chain.funder_key_env == "FUNDER_KEY"


def test_json_schema_accepts_unit_strings() -> None:
    schema = scenario_json_schema()
    assert schema["title"] == "Scenario"
    assert set(schema["required"]) == {"name", "agents", "schedule"}
    block_time = schema["$defs"]["ChainConfig"]["properties"]["block_time"]
    assert {"type": "string"} in block_time["anyOf"]
    assert schema["$defs"]["ChainConfig"]["additionalProperties"] is False


# --------------------------------------------------------------------------
# Unit parsers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (123, 123),
        ("100 wei", 100),
        ("2 gwei", 2 * 10**9),
        ("10 ether", 10 * ETHER),
        ("0.5 ether", ETHER // 2),
        ("0.1 ether", 10**17),
        ("0.1ether", 10**17),
        ("1e15", 10**15),
        (1e15, 10**15),
        ("1.5e3 gwei", 1_500 * 10**9),
        ("30_000_000", 30_000_000),
        ("1_000 ether", 1000 * ETHER),
        ("  7 GWEI ", 7 * 10**9),
        ("1.234567890123456789 ether", 1_234_567_890_123_456_789),
    ],
)
def test_parse_wei(value: object, expected: int) -> None:
    assert parse_wei(value) == expected
    assert type(parse_wei(value)) is int


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10 ethr", "unknown unit 'ethr'"),
        ("3 finney", "unknown unit 'finney'"),
        (-1, "cannot be negative"),
        ("-5 ether", "cannot be negative"),
        ("0.1", "not a whole number of wei"),
        ("1.23456789012345678901 ether", "not a whole number"),
        (0.5, "not a whole number"),
        (True, "boolean"),
        (None, "got NoneType"),
        ([1], "got list"),
        ("", "cannot read"),
        ("ether", "cannot read"),
        ("1__0", "unknown unit"),
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        ("1e999999 wei", "out of range"),
    ],
)
def test_parse_wei_rejects(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_wei(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (45, 45),
        ("45", 45),
        ("30s", 30),
        ("5m", 300),
        ("2h", 7200),
        ("1d", DAY),
        ("1.5d", DAY * 3 // 2),
        ("1w", 7 * DAY),
        ("1 d", DAY),
        ("9 days", 9 * DAY),
        ("2 hours", 7200),
        ("10 minutes", 600),
        ("3 seconds", 3),
        ("1 min", 60),
        ("0.5h", 1800),
        (2.0, 2),
    ],
)
def test_parse_duration(value: object, expected: int) -> None:
    assert parse_duration_s(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1 fortnight", "unknown unit 'fortnight'"),
        ("1.5s", "not a whole number of seconds"),
        (0.5, "not a whole number"),
        ("-1d", "cannot be negative"),
        ("d", "cannot read"),
        (False, "boolean"),
        ({"days": 1}, "got dict"),
    ],
)
def test_parse_duration_rejects(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_duration_s(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(600, 600), ("600", 600), ("600 blocks", 600), ("1 block", 1), ("1_000blocks", 1000)],
)
def test_parse_blocks(value: object, expected: int) -> None:
    assert parse_blocks(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10 blokcs", "unknown unit 'blokcs'"),
        ("1.5 blocks", "not a whole number of blocks"),
        (-3, "cannot be negative"),
        ("10 s", "unknown unit 's'"),
    ],
)
def test_parse_blocks_rejects(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_blocks(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (30_000_000, 30_000_000),
        ("30_000_000", 30_000_000),
        ("30M", 30_000_000),
        ("15 M", 15_000_000),
        ("500k", 500_000),
        ("1.5M", 1_500_000),
        ("21000", 21_000),
    ],
)
def test_parse_gas(value: object, expected: int) -> None:
    assert parse_gas(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("30 Mgas", "unknown unit 'mgas'"),
        ("1.5", "not a whole number of gas"),
        ("-1M", "cannot be negative"),
        ("lots", "cannot read"),
    ],
)
def test_parse_gas_rejects(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_gas(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.2, 0.2),
        (1, 1.0),
        ("0.2", 0.2),
        ("0.2/s", 0.2),
        ("2/min", 2 / 60),
        ("12/h", 12 / 3600),
        ("24/day", 24 / DAY),
        ("0.2 per s", 0.2),
        ("6 per minute", 0.1),
        ("3 / hour", 3 / 3600),
    ],
)
def test_parse_rate(value: object, expected: float) -> None:
    result = parse_rate(value)
    assert type(result) is float
    assert result == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2/fortnight", "unknown unit '/fortnight'"),
        ("2 per", "unknown unit 'per'"),
        ("2 min", "unknown unit 'min'"),
        ("-1/s", "cannot be negative"),
        ("fast", "cannot read"),
        (True, "boolean"),
    ],
)
def test_parse_rate_rejects(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_rate(value)


# --------------------------------------------------------------------------
# Model types: options per type, labels per type, the market's one model.

_MODEL_BASE = """\
name: m
agents: [{{policy: honest, count: 1}}]
schedule: {{duration: 10}}
model: {model}
dataset: {dataset}
incentive: {incentive}
"""


def _model_scenario(model: str, dataset: str = "{}", incentive: str = "{}") -> str:
    return _MODEL_BASE.format(model=model, dataset=dataset, incentive=incentive)


def test_old_model_type_spelling_is_normalised() -> None:
    s = load_scenario_text(_model_scenario("{type: sparse perceptron, learning_rate: 0.25}"))
    assert (s.model.type, s.model.learning_rate, s.model.intercept, s.model.smoothing) == (
        "sparse_perceptron", 0.25, 0.0, None)
    assert Scenario.model_validate(s.model_dump(mode="json")) == s  # the resolved form loads again


@pytest.mark.parametrize("kind", ["sparse_perceptron", "dense_perceptron", "naive_bayes", "dense_nearest_centroid",
                                  "sparse_nearest_centroid"])
def test_every_model_type_is_selectable(kind: str) -> None:
    s = load_scenario_text(_model_scenario(f"{{type: {kind}}}"))
    assert s.model.type == kind
    perceptron = kind.endswith("perceptron")
    assert (s.model.learning_rate is not None) == perceptron
    assert (s.model.smoothing is not None) == (kind == "naive_bayes")


@pytest.mark.parametrize("model,location,says", [
    ("{type: naive_bayes, learning_rate: 0.1}", "model.learning_rate", "applies to sparse_perceptron and "
     "dense_perceptron only, not to model type 'naive_bayes'"),
    ("{type: dense_nearest_centroid, intercept: 1}", "model.intercept", "not to model type 'dense_nearest_centroid'"),
    ("{type: sparse_perceptron, smoothing: 2}", "model.smoothing", "applies to naive_bayes only"),
    ("{type: naive_bayes, smoothing: 0}", "model.smoothing", "greater than 0"),
    ("{type: svm}", "model.type", "'sparse_nearest_centroid'"),
])
def test_model_option_errors_name_the_field(model: str, location: str, says: str) -> None:
    (issue,) = _errors(_model_scenario(model)).issues
    assert issue.location == location and says in issue.message
    assert issue.line == 4  # the `model:` line of the flow mapping


@pytest.mark.parametrize("model,dataset,incentive,says", [
    ("{type: sparse_perceptron}", "{name: digits, multiclass: true}", "{}",
     "model.type 'sparse_perceptron' takes two classes only, and dataset.multiclass keeps them all"),
    ("{type: dense_perceptron}", "{name: csv, path: x.csv, multiclass: true}", "{}",
     "model.type 'dense_perceptron' takes two classes only"),
    ("{type: naive_bayes}", "{}", "{type: prediction_market}",
     "the prediction market replays a sparse_perceptron only"),
])
def test_model_and_labels_or_market_that_do_not_fit(model: str, dataset: str, incentive: str, says: str) -> None:
    (issue,) = _errors(_model_scenario(model, dataset, incentive)).issues
    assert says in issue.message
    assert issue.location == "model.type"  # the field to change, not the top of the file


@pytest.mark.parametrize("dataset,location,says", [
    ("{name: tictactoe, multiclass: true}", "dataset.multiclass", "has two classes only"),
    ("{name: digits, positive: '7', multiclass: true}", "dataset.multiclass", "remove 'positive'"),
])
def test_multiclass_dataset_errors(dataset: str, location: str, says: str) -> None:
    (issue,) = _errors(_model_scenario("{type: naive_bayes}", dataset)).issues
    assert issue.location == location and says in issue.message


def test_multiclass_with_a_multiclass_model_is_valid() -> None:
    s = load_scenario_text(_model_scenario("{type: sparse_nearest_centroid}", "{name: digits, multiclass: true}"))
    assert s.dataset.multiclass and s.model.type == "sparse_nearest_centroid"
