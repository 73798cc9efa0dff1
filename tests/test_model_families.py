"""Model families as plugins: the registry (names, aliases, contracts, file types), a family
registered at run time going through the scenario schema, training, deploy on the real node and
the twin check, and a family installed as a `dcai.models` entry point seen by `dcai schema` and
`dcai validate` in a fresh process (a broken one reported in one line)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agents import gas as gas_limits
from contracts import families
from contracts.deploy import StakeableSpec, deploy_system
from contracts.families.dense_perceptron import DensePerceptron, DensePerceptronSpec
from contracts.model_files import model_from_dict, model_to_dict
from contracts.transact import Transactor
from contracts.twins import twin_from_chain
from orchestrator.datasets import for_model, load_dataset, split
from orchestrator.scenario import DatasetConfig, ModelConfig, scenario_json_schema
from orchestrator.training import train_initial
from orchestrator.versions import load_initial_model, save_initial_model

ROOT = Path(__file__).resolve().parents[1]
FIXED = 10**9


class CentroidPerceptron(DensePerceptron):
    """The tiny family of these tests: the dense perceptron's contract, twin, gas and file format,
    with its own name and initial training (weights = difference of the class means)."""

    name = "centroid_perceptron"
    description = "dense perceptron started at the difference of the class means"
    file_types = ("centroid perceptron",)
    options = {"learning_rate": 0.25}

    def train(self, ds: Any, rows: np.ndarray, options: Mapping[str, float], seed: int) -> DensePerceptronSpec:
        x = np.array([ds.samples[i] for i in rows], dtype=np.float64)
        y = ds.labels[rows]
        w = x[y == 1].mean(axis=0) - x[y == 0].mean(axis=0)
        w *= FIXED / np.linalg.norm(w)
        return DensePerceptronSpec([int(round(v)) for v in w], 0, int(round(options["learning_rate"] * FIXED)))


@pytest.fixture
def tiny():
    family = families.register(CentroidPerceptron)
    yield family
    families.unregister(family.name)


# ---- the registry ----------------------------------------------------------------------------------


def test_one_spelling_per_family_with_the_old_alias_mapped_in_one_place():
    assert families.names() == ("sparse_perceptron", "dense_perceptron", "naive_bayes", "dense_nearest_centroid",
                                "sparse_nearest_centroid")
    assert families.get("sparse perceptron").name == "sparse_perceptron"  # shipped scenarios used it
    assert families.get("NaiveBayes").name == "naive_bayes"  # a deployed system knows its contract only
    assert families.by_file_type("Nearest  Centroid Classifier").name == "dense_nearest_centroid"
    with pytest.raises(families.UnknownModelFamily, match=r"'naive_bays' \(did you mean 'naive_bayes'\?\)"):
        families.get("naive_bays")
    with pytest.raises(ValueError, match="'sparse perceptron' is already 'sparse_perceptron'"):
        families.register(type("Clash", (CentroidPerceptron,), {"name": "clash", "aliases": ("sparse perceptron",)}))


def test_every_family_answers_every_cell_of_its_gas_table():
    for f in families.families():
        for mech in f.mechanisms:
            ops = ("add", "collect") if mech == "prediction_market" else ("add", "refund", "report", "predict")
            for op in ops:
                small, large = f.gas_limit(op, 1, 2, mech), f.gas_limit(op, 64, 10, mech)
                assert 21_000 < small <= large < 30_000_000, (f.name, mech, op)
    with pytest.raises(ValueError, match="naive_bayes.*no gas limit for operation 'collect'"):
        families.get("naive_bayes").gas_limit("collect", 1)


def test_a_family_registered_at_run_time_is_a_scenario_model_type(tiny):
    cfg = ModelConfig.model_validate({"type": "centroid_perceptron"})
    assert (cfg.learning_rate, cfg.intercept, cfg.smoothing) == (0.25, None, None)  # its own options only
    assert cfg.binary_only and cfg.dense and cfg.family_options() == {"learning_rate": 0.25}
    with pytest.raises(ValueError, match="intercept applies to .*not to model type 'centroid_perceptron'"):
        ModelConfig.model_validate({"type": "centroid_perceptron", "intercept": 1.0})
    schema = scenario_json_schema()["$defs"]["ModelConfig"]["properties"]["type"]
    assert "centroid_perceptron" in schema["enum"] and "difference of the class means" in schema["description"]
    families.unregister("centroid_perceptron")
    with pytest.raises(ValueError, match="unknown model type 'centroid_perceptron'"):
        ModelConfig.model_validate({"type": "centroid_perceptron"})
    assert "centroid_perceptron" not in scenario_json_schema()["$defs"]["ModelConfig"]["properties"]["type"]["enum"]
    families.register(tiny)


async def test_a_family_registered_at_run_time_deploys_and_its_twin_matches_the_chain(
        tiny, client, tx, compiled, dev, chain_id, tmp_path):
    cfg = ModelConfig(type="centroid_perceptron")
    dataset = DatasetConfig(name="breast_cancer")
    ds = for_model(load_dataset(dataset, 0), cfg.type)  # dense vectors: the family says so
    parts = split(ds, dataset, 0)
    spec = train_initial(ds, parts.init, cfg, 0)
    assert spec.learning_rate == FIXED // 4 and spec.weights != DensePerceptron().train(
        ds, parts.init, {"learning_rate": 0.25, "intercept": 0.0}, 0).weights  # its own training
    block = await client.get_block("latest")
    system = await deploy_system(client, tx, compiled, spec,
                                 StakeableSpec(refund_wait_s=60, owner_claim_wait_s=60, any_address_claim_wait_s=60,
                                               cost_weight=10**9),
                                 gas_limit=int(block["gasLimit"], 16))
    test = [ds.samples[i] for i in parts.test[:40]]
    chain_twin = await twin_from_chain(client, system)
    assert chain_twin.weights == spec.weights
    predicted = tiny.twin_from_spec(spec).predict(test)
    assert np.array_equal(chain_twin.predict(test), predicted)
    assert float((predicted == ds.labels[parts.test[:40]]).mean()) > 0.7
    m = system.model_abi
    for x, p in list(zip(test, predicted))[:5]:  # the contract itself agrees
        assert m.fn("predict").decode(await client.eth_call(system.model, m.encode("predict", list(x)))) == p
    # A contribution the model gets wrong trains it, on chain and in the twin, to the same integers.
    twin = tiny.twin_from_spec(spec)
    wrong = next(i for i in parts.agents if twin.predict_one(ds.samples[i]) != ds.labels[i])
    x, y = list(ds.samples[wrong]), int(ds.labels[wrong])
    limit = gas_limits.add_data_gas(len(x), "centroid_perceptron")  # the family's gas table, by its name
    t_abi = system.abis["CollaborativeTrainer"]
    receipt = await Transactor(client, dev[1], chain_id).send(system.trainer, t_abi.encode("addData", x, y), 10**17, gas=limit)
    assert int(receipt["gasUsed"], 16) * 1.2 <= limit
    twin.update(x, y)
    after = await twin_from_chain(client, system)
    assert after.weights == twin.weights != spec.weights
    # The run folder's initial model names the family and comes back as the same spec.
    save_initial_model(tmp_path, spec, tiny.name)
    assert json.loads((tmp_path / "model_initial.json").read_text())["family"] == "centroid_perceptron"
    assert load_initial_model(tmp_path) == spec
    assert model_from_dict(model_to_dict(spec)) == spec


# ---- plugins by entry point ------------------------------------------------------------------------

PLUGIN = '''
from contracts.families.dense_perceptron import DensePerceptron


class PluginPerceptron(DensePerceptron):
    name = "plugin_perceptron"
    description = "a dense perceptron installed as a plugin"
    file_types = ("plugin perceptron",)
'''


def _install(site: Path, name: str, module: str, source: str) -> None:
    (site / f"{module}.py").write_text(source)
    info = site / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[dcai.models]\n{name} = {module}:PluginPerceptron\n")


def _dcai(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(site)])}
    return subprocess.run([sys.executable, "-c", "import sys; from orchestrator.cli import main; sys.exit(main())",
                           *args], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)


SCENARIO = """name: plugin-model
model: {type: plugin_perceptron, learning_rate: 0.1}
dataset: {name: breast_cancer}
agents:
  - {policy: honest, count: 2, funding: 1 ether, samples_per_agent: 2, rate: 1/s}
schedule: {duration: 5 blocks}
"""


def test_an_installed_plugin_is_in_the_schema_and_validates(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _install(site, "plugin_perceptron", "plugin_family", PLUGIN)
    schema = _dcai(site, "schema")
    assert schema.returncode == 0, schema.stderr
    kinds = json.loads(schema.stdout)["$defs"]["ModelConfig"]["properties"]["type"]["enum"]
    assert "plugin_perceptron" in kinds and "naive_bayes" in kinds
    scenario = tmp_path / "plugin.yaml"
    scenario.write_text(SCENARIO)
    ok = _dcai(site, "validate", str(scenario))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    scenario.write_text(SCENARIO.replace("learning_rate: 0.1", "smoothing: 1"))
    bad = _dcai(site, "validate", str(scenario))
    assert bad.returncode != 0 and "model.smoothing" in bad.stdout + bad.stderr


def test_a_broken_plugin_is_named_in_one_line(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _install(site, "broken_family", "broken_family", "def oops(:\n")
    scenario = tmp_path / "plugin.yaml"
    scenario.write_text(SCENARIO.replace("plugin_perceptron", "naive_bayes").replace(", learning_rate: 0.1", ""))
    out = _dcai(site, "validate", str(scenario))
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "model family plugin 'broken_family' (broken_family:PluginPerceptron): SyntaxError" in text
    assert "Traceback" not in text, text
