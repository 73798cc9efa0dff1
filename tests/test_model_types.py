"""Every model family in scenario runs: datasets encoded per model, initial training, multi-class
labels, per-family gas limits measured against the real node, and short driven runs on anvil with
real Ray shards for each of the five types (ledger reconciled to the wei, twin and contract agreeing
on every spot check, the model replayed from the results folder equal to the one measured)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from agents import gas as gas_limits
from agents.policies.base import PolicyContext
from agents.policies.honest import HonestPolicy
from contracts.compiler import compile_contracts
from contracts.encoders import is_unit_norm
from contracts.signing import dev_accounts
from contracts.transact import Transactor
from contracts.twins import twin_from_spec
from orchestrator.datasets import DatasetError, for_model, load_dataset, split
from orchestrator.run import Run
from orchestrator.scenario import DatasetConfig, ModelConfig, load_scenario_text
from orchestrator.training import train_initial
from orchestrator.versions import evaluate_at

# benchmarks/ is not an installed package: importable from the project root (`python -m pytest` adds
# it, a bare `pytest` does not).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.gas_limits import Case, measure  # noqa: E402

# ---- datasets and training (no node) -----------------------------------------------------------


def test_digits_multiclass_and_dense_encoding():
    ds = load_dataset(DatasetConfig(name="digits", multiclass=True), 0)
    assert ds.n_classes == 10 and ds.class_names[3] == "3" and set(ds.labels.tolist()) == set(range(10))
    dense = for_model(ds, "dense_nearest_centroid")
    assert dense.n_features == 65  # 64 pixels and the constant bias component
    assert all(len(s) == 65 and is_unit_norm(s) for s in dense.samples[:50])
    assert dense.samples[0][-1] > 0 and np.array_equal(dense.labels, ds.labels)
    assert for_model(ds, "naive_bayes") is ds  # sparse models take the present-feature indices as they are


def test_a_binary_model_refuses_more_classes_naming_the_dataset(tmp_path):
    ds = load_dataset(DatasetConfig(name="digits", multiclass=True), 0)
    with pytest.raises(DatasetError, match="dataset digits: 10 classes, but model type 'dense_perceptron' takes two"):
        for_model(ds, "dense_perceptron")
    f = tmp_path / "three.csv"
    f.write_text("a,b,y\n1,2,x\n3,4,z\n5,6,w\n7,8,x\n")
    with pytest.raises(DatasetError, match=r"three.csv: the label takes 3 values .*multiclass: true"):
        load_dataset(DatasetConfig(name="csv", path=str(f)), 0)
    multi = load_dataset(DatasetConfig(name="csv", path=str(f), multiclass=True), 0)
    assert multi.class_names == ("w", "x", "z") and multi.labels.tolist() == [1, 2, 0, 1]


def test_libsvm_multiclass_file_for_sparse_and_dense_models(tmp_path):
    f = tmp_path / "three.svm"
    f.write_text("1 3:1 7:2\n-1 1:1\n2 3:1 5:0.5\n-1 2:1 7:-1\n")
    ds = load_dataset(DatasetConfig(name="libsvm", path=str(f), multiclass=True), 0)
    assert ds.class_names == ("-1", "1", "2") and ds.labels.tolist() == [1, 0, 2, 0]
    assert for_model(ds, "sparse_nearest_centroid").samples[0] == (2, 6)
    dense = for_model(ds, "dense_nearest_centroid")
    assert dense.n_features == 8 and all(is_unit_norm(s) for s in dense.samples)
    assert dense.samples[3][6] < 0  # a negative value stays negative (scaled by the column's largest magnitude)


@pytest.mark.parametrize("kind", ["sparse_perceptron", "dense_perceptron", "naive_bayes", "dense_nearest_centroid",
                                  "sparse_nearest_centroid"])
def test_initial_model_of_every_type_beats_chance_through_its_twin(kind):
    cfg = DatasetConfig(name="digits", multiclass=not kind.endswith("perceptron"))
    ds = for_model(load_dataset(cfg, 0), kind)
    parts = split(ds, cfg, 0)
    spec = train_initial(ds, parts.init, ModelConfig(type=kind), 0)
    twin = twin_from_spec(spec)
    acc = float((twin.predict([ds.samples[i] for i in parts.test]) == ds.labels[parts.test]).mean())
    assert acc > (0.7 if ds.n_classes == 2 else 0.6), acc


def test_flipped_labels_are_other_classes():
    def policy(k: int) -> HonestPolicy:
        return HonestPolicy(PolicyContext(0, np.random.default_rng(1), {}, [], n_classes=k))

    assert [policy(2).wrong_label(y) for y in (0, 1)] == [1, 0]
    ten = policy(10)
    drawn = [ten.wrong_label(y) for y in range(10) for _ in range(30)]
    assert all(d != y for d, y in zip(drawn, [y for y in range(10) for _ in range(30)]))
    assert set(drawn) == set(range(10))


# ---- gas limits against the node -----------------------------------------------------------------


async def test_gas_limits_cover_measured_worst_cases(anvil, client):
    """The largest inputs of the calibration, re-measured: every limit covers its call by the margin
    stack-facts asks for (>= 1.2x), without reserving absurd block space."""
    compiled = compile_contracts()  # the user cache the runs below use too: no second compile
    chain_id = await client.chain_id()
    txs = [Transactor(client, a, chain_id) for a in dev_accounts(4)]
    block = await client.get_block("latest")
    gas_limit = int(block["gasLimit"], 16)
    for case in (Case("DensePerceptron", 2, 65), Case("NaiveBayes", 10, 40), Case("SparseNearestCentroid", 10, 40),
                 Case("DenseNearestCentroid", 10, 65)):
        used = await measure(client, compiled, txs, gas_limit, case)
        for op, fn in (("add", gas_limits.add_data_gas), ("refund", gas_limits.refund_gas),
                       ("report", gas_limits.report_gas), ("predict", gas_limits.predict_gas)):
            ratio = fn(case.n, case.contract, case.k) / used[op]
            assert 1.2 <= ratio <= 2.0, (case, op, used[op], ratio)


# ---- runs -----------------------------------------------------------------------------------------

SCENARIO = """
name: types-{kind}
seed: 5
chain: {{mining: driven, block_time: 12s}}
model: {{type: {kind}}}
dataset: {dataset}
incentive: {incentive}
agents:
  - {{policy: honest, count: 2, funding: 1 ether, samples_per_agent: 4, rate: 0.2/s,
     params: {{recheck_s: 10m, give_up_s: 1h}}}}
  - {{policy: adversarial, count: 1, funding: 1 ether, samples_per_agent: 6, rate: 0.2/s}}
{extra}
schedule: {{duration: 40 blocks}}
evaluation: {{every: 10 blocks, spot_checks: 3}}
outputs: {{progress: false}}
telemetry: {{mqtt: none}}
"""
STAKEABLE = "{cost_weight: 1e12, refund_wait: 10m, owner_claim_wait: 20m, any_address_claim_wait: 30m}"
POINTS = "{type: points, refund_wait: 2m, owner_claim_wait: 2m, any_address_claim_wait: 2m}"
KARMA = ("  - {policy: karma_seeker, count: 1, funding: 1 ether, samples_per_agent: 3, rate: 0.2/s,\n"
         "     params: {near_duplicates: 2}}")
RUNS = {  # type: (dataset, incentive, extra group)
    "sparse_perceptron": ("{samples: 300, features: 120, avg_length: 8}", STAKEABLE, ""),
    "dense_perceptron": ("{name: breast_cancer}", STAKEABLE, ""),
    "naive_bayes": ("{name: digits, multiclass: true}", STAKEABLE, ""),
    "sparse_nearest_centroid": ("{name: tictactoe}", STAKEABLE, ""),
    "dense_nearest_centroid": ("{name: digits, multiclass: true}", POINTS, KARMA),
}


CONTRACTS = {"sparse_perceptron": "SparsePerceptron", "dense_perceptron": "DensePerceptron",
             "naive_bayes": "NaiveBayes", "sparse_nearest_centroid": "SparseNearestCentroid",
             "dense_nearest_centroid": "DenseNearestCentroid"}


def _columns(run_dir: Path, name: str) -> dict[str, list[Any]]:
    return pq.read_table(run_dir / name).to_pydict()


@pytest.mark.parametrize("kind", list(RUNS))
def test_short_run_of_every_model_type(kind, tmp_path, ray_cluster):
    dataset, incentive, extra = RUNS[kind]
    scenario = load_scenario_text(SCENARIO.format(kind=kind, dataset=dataset, incentive=incentive, extra=extra),
                                  f"{kind}.yaml")
    run_dir = Run(scenario, results_root=tmp_path, run_id=kind, progress=False).execute()
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["status"] == "completed", s["error"]
    assert s["reconciliation"]["ok"]
    assert s["accuracy"]["spot_check_mismatches"] == 0 and s["accuracy"]["samples"] >= 2
    assert s["transactions"]["all_final"]
    led = _columns(run_dir, "ledger.parquet")
    assert not [r for r in led["reason"] if "out of gas" in r]  # the family's gas limits suffice
    adds = [st for a, st in zip(led["action"], led["status"]) if a == "add"]
    assert adds and set(adds) == {"included"}
    assert any(a == "refund" and st == "included" for a, st in zip(led["action"], led["status"]))
    assert json.loads((run_dir / "model_initial.json").read_text())["contract"] == CONTRACTS[kind]
    # `dcai model`: the model replayed from the results folder is the one the evaluator measured on chain.
    acc = _columns(run_dir, "accuracy.parquet")
    assert evaluate_at(run_dir, acc["block"][-1])["accuracy"] == acc["accuracy"][-1]

    contributions = _columns(run_dir, "contributions.parquet")
    agents = _columns(run_dir, "agents.parquet")
    group_of = dict(zip(agents["address"], agents["group"]))
    ds = for_model(load_dataset(scenario.dataset, scenario.seed), kind)
    truth: dict[tuple[int, ...], set[int]] = {}
    for x, y in zip(ds.samples, ds.labels):
        truth.setdefault(tuple(x), set()).add(int(y))
    flipped = [(tuple(d), y) for d, y, a in zip(contributions["data"], contributions["label"], contributions["author"])
               if group_of.get(a) == "adversarial"]
    # A wrong label every time (unless two samples of different classes share one input), within range.
    assert flipped and all((y not in truth[d] or len(truth[d]) > 1) and 0 <= y < ds.n_classes for d, y in flipped)
    if ds.n_classes > 2:
        assert len(set(contributions["label"])) > 2
    # Every class's accuracy is kept, the first two agreeing with their own columns.
    per = acc["accuracy_per_class"][-1]
    assert len(per) == ds.n_classes
    assert per[:2] == [acc["accuracy_class0"][-1], acc["accuracy_class1"][-1]] or any(v != v for v in per[:2])
    # The report's accuracy plot draws the overall line and one line per class (no baseline here).
    import re

    drawn = re.search(r'data-plot="accuracy" data-series="(\d+)"', (run_dir / "report.html").read_text())
    assert drawn and int(drawn.group(1)) == 1 + ds.n_classes
