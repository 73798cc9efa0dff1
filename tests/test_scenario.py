"""Scenario schema: good scenarios get their values and defaults; model types, their options and
the labels and mechanisms they fit (loader errors: test_scenario_errors.py; units: test_scenario_units.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.scenario import Scenario, load_scenario, load_scenario_text, scenario_json_schema

from scenario_helpers import DAY, ETHER, FULL, MINIMAL, _errors

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
