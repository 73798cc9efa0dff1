"""The averaged sparse perceptron (`model.averaging`): chain against twin, scenario and file errors.

The twin must match the contract bit for bit in averaged mode: random models, random adds (repeated
indices included), then every weight, running sum, the step count and the predictions are read back
from a real anvil node and compared. The plain mode (averaging 0) is covered by tests/test_models.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eth_abi import encode as abi_encode
from eth_utils import to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.abi import ContractABI
from contracts.compiler import CompileResult
from contracts.deploy import DeploymentError, SparsePerceptronSpec
from contracts.families import get
from contracts.families.common import FileReader, ModelRevert
from contracts.rpc import RpcClient
from contracts.transact import Transactor
from contracts.twins import SparsePerceptronTwin, twin_from_spec
from orchestrator.scenario import Scenario
from orchestrator.scenario_load import load_scenario_text

ROOT = Path(__file__).resolve().parents[1]

F = 10**9
GAS = 15_000_000


async def deploy(tx: Transactor, compiled: CompileResult, spec: SparsePerceptronSpec) -> tuple[str, ContractABI]:
    abi = ContractABI(compiled["SparsePerceptron"].abi)
    types, args = spec.constructor()
    r = await tx.send(None, compiled["SparsePerceptron"].bytecode + abi_encode(types, args), gas=GAS)
    address = to_checksum_address(r["contractAddress"])
    for _, calldata in spec.init_calls(abi, 30_000_000):
        await tx.send(address, calldata, gas=GAS)
    return address, abi


def state(twin: SparsePerceptronTwin) -> Any:
    return ([int(w) for w in twin.weights], list(twin.sums or []), twin.steps, twin.intercept, twin.learning_rate,
            twin.averaging)


async def predictions(client: RpcClient, address: str, abi: ContractABI, samples: list[list[int]]) -> list[int]:
    return [int(abi.fn("predict").decode(await client.eth_call(address, abi.encode("predict", s))))
            for s in samples]


@st.composite
def cases(draw: st.DrawFn) -> tuple[SparsePerceptronSpec, list[list[int]], list[tuple[list[int], int]]]:
    n = draw(st.integers(1, 30))
    spec = SparsePerceptronSpec(weights=draw(st.lists(st.integers(-3 * F, 3 * F), min_size=n, max_size=n)),
                                intercept=draw(st.integers(-2 * F, 2 * F)),
                                learning_rate=draw(st.integers(1, 2 * F)), averaging=draw(st.integers(1, 500)))
    sample = st.lists(st.integers(0, n - 1), max_size=10)  # repeats allowed: they count twice
    return spec, draw(st.lists(sample, min_size=1, max_size=6)), draw(st.lists(st.tuples(sample, st.integers(0, 1)),
                                                                               max_size=8))


async def test_averaged_twin_is_bit_exact(client: RpcClient, tx: Transactor, compiled: CompileResult) -> None:
    loop = asyncio.get_running_loop()

    async def body(case: Any) -> None:
        spec, samples, updates = case
        address, abi = await deploy(tx, compiled, spec)
        twin = twin_from_spec(spec)
        assert state(await SparsePerceptronTwin.from_chain(client, address, abi, spec.n_features)) == state(twin)
        for sample, label in updates:
            await tx.send(address, abi.encode("update", sample, label), gas=GAS)
            twin.update(sample, label)
        assert state(await SparsePerceptronTwin.from_chain(client, address, abi, spec.n_features)) == state(twin)
        assert twin.steps == spec.averaging + len(updates)
        chain = await predictions(client, address, abi, samples)
        assert twin.predict(samples).tolist() == chain
        assert [twin.predict_one(s) for s in samples] == chain

    @settings(max_examples=25, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(cases())
    def prop(case: Any) -> None:
        asyncio.run_coroutine_threadsafe(body(case), loop).result(timeout=300)

    await asyncio.to_thread(prop)


async def test_averaging_resists_one_flipped_sample(client: RpcClient, tx: Transactor,
                                                    compiled: CompileResult) -> None:
    """The reason for the mode: a plain perceptron learns a contradicting sample at once (the model
    then agrees with it); averaged over 100 deployed steps, the answer stays the deployed one."""
    sample = [0, 1, 2, 3]
    for averaging, expected in ((0, 0), (100, 1)):
        spec = SparsePerceptronSpec(weights=[F] * 4 + [0] * 2, learning_rate=F, averaging=averaging)
        address, abi = await deploy(tx, compiled, spec)
        assert await predictions(client, address, abi, [sample]) == [1]
        await tx.send(address, abi.encode("update", sample, 0), gas=GAS)
        assert await predictions(client, address, abi, [sample]) == [expected]
        twin = twin_from_spec(spec)
        twin.update(sample, 0)
        assert twin.predict_one(sample) == expected


async def test_averaged_update_reverts_like_the_twin(client: RpcClient, tx: Transactor,
                                                     compiled: CompileResult) -> None:
    """A weight pushed past int80 reverts the whole call on chain (WeightOverflow, the step count
    unchanged); the twin raises the same error and keeps its state. So does an index out of range."""
    from contracts.abi import decode_revert
    from contracts.rpc import RpcError

    # Score (2**79 - 1) + 2 * -(2**79) < 0 predicts 0; label 1 is a mistake that moves w[0] past the top.
    spec = SparsePerceptronSpec(weights=[2**79 - 1, -(2**79), 0], learning_rate=F, averaging=5)
    address, abi = await deploy(tx, compiled, spec)
    for sample, error in (([0, 1, 1], "WeightOverflow"), ([3], "FeatureOutOfRange")):
        with pytest.raises(RpcError) as ei:
            await client.call("eth_call", {"from": tx.account.address, "to": address,
                                           "data": "0x" + abi.encode("update", sample, 1).hex()}, "latest")
        assert decode_revert(ei.value.data, abi.errors).split("(")[0] == error
        twin = twin_from_spec(spec)
        before = state(twin)
        with pytest.raises(ModelRevert, match=error):
            twin.update(sample, 1)
        assert state(twin) == before
    chain = await SparsePerceptronTwin.from_chain(client, address, abi, spec.n_features)
    assert chain.steps == 5 and chain.sums == [0, 0, 0]


def test_spec_and_scenario_reject_bad_averaging() -> None:
    with pytest.raises(DeploymentError, match="averaging: expected a whole number >= 0"):
        SparsePerceptronSpec(weights=[0], averaging=-1)
    base = {"name": "x", "model": {"type": "sparse_perceptron"}, "agents": [{"policy": "honest", "count": 1}],
            "schedule": {"duration": 10}}
    for bad, message in ((-1, r"whole number of updates from 0 \(off\) to 2\*\*64, got -1\b"),
                         (2.5, r"whole number of updates from 0 \(off\) to 2\*\*64, got 2.5"),
                         (1e30, r"to 2\*\*64, got 1e\+30")):
        with pytest.raises(ValueError, match=message) as err:
            Scenario.model_validate({**base, "model": {"type": "sparse_perceptron", "averaging": bad}})
        assert "averaging" in str(err.value)
    with pytest.raises(ValueError, match="averaging applies to sparse_perceptron only"):
        Scenario.model_validate({**base, "model": {"type": "naive_bayes", "averaging": 10}})
    market = (ROOT / "scenarios" / "prediction_market.yaml").read_text()
    assert "\nmodel:" not in market  # the default model, a sparse perceptron
    with pytest.raises(Exception, match="prediction market replays the plain perceptron") as err:
        load_scenario_text(market + "model: {averaging: 10}\n", "market.yaml")
    assert "averaging" in str(err.value)
    sc = Scenario.model_validate({**base, "model": {"type": "sparse_perceptron", "averaging": 240}})
    assert sc.model.family_options()["averaging"] == 240
    assert Scenario.model_validate(base).model.family_options()["averaging"] == 0


def test_model_file_round_trip_and_error() -> None:
    family = get("sparse_perceptron")
    spec = SparsePerceptronSpec(weights=[F, -F, 0], learning_rate=F // 2, averaging=240)
    data = family.write_file(spec)
    assert data["averaging"] == 240
    assert family.read_file(FileReader(data, "m.json")) == spec
    assert "averaging" not in family.write_file(SparsePerceptronSpec(weights=[F]))
    with pytest.raises(Exception, match="averaging"):
        family.read_file(FileReader({**data, "averaging": -3}, "m.json"))


async def test_market_refuses_an_averaged_model(compiled: CompileResult) -> None:
    """The market replays the plain fixed-step rule in its own overlay: an averaged model would be
    scored by a rule it does not follow, so deployment stops before sending anything."""
    from contracts.mechanisms import deploy_market

    spec = SparsePerceptronSpec(weights=[F, -F, 0], averaging=10)
    with pytest.raises(DeploymentError, match="plain perceptron only"):
        await deploy_market(None, None, compiled, spec, None, gas_limit=30_000_000)  # type: ignore[arg-type]


def test_float_replay_follows_the_averaged_contract_rule() -> None:
    """benchmarks/fidelity_replay.py's contract learner in averaged mode plays the twin's integer rule
    in float: fed the same contributions, both give the same answers (ties aside)."""
    from benchmarks.fidelity_replay import _Perceptron
    from contracts.deploy import FIXED_POINT
    from orchestrator.datasets import for_model, load_dataset, split
    from orchestrator.scenario_load import load_scenario_text as load
    from orchestrator.training import train_initial

    sc = load("""
name: averaged-replay
seed: 5
model: {type: sparse perceptron, learning_rate: 0.5, averaging: 50}
dataset: {name: synthetic_sparse, samples: 600, features: 200, avg_length: 10, noise: 0.05,
          init_train_fraction: 0.1, test_fraction: 0.2}
agents: [{policy: honest, count: 1}]
schedule: {duration: 10 blocks}
""", "averaged.yaml")
    ds = for_model(load_dataset(sc.dataset, sc.seed), sc.model.type)
    parts = split(ds, sc.dataset, sc.seed)
    spec = train_initial(ds, parts.init, sc.model, sc.seed)
    assert spec.averaging == 50
    twin = twin_from_spec(spec)
    floats = _Perceptron("contract", ds, parts.init, sc)
    rng = np.random.default_rng(0)
    for i in parts.agents:
        label = int(ds.labels[i]) if rng.random() > 0.3 else 1 - int(ds.labels[i])  # some flipped labels
        twin.update(ds.samples[i], label)
        floats.update(ds.samples[i], label)
    assert twin.steps == 50 + len(parts.agents)
    test = [ds.samples[i] for i in parts.test]
    chain_rule = twin.predict(test)
    float_rule = np.array([floats.predict(s) for s in test])
    assert (chain_rule == float_rule).mean() >= 0.99
    assert np.allclose(floats.wt, np.array([int(w) for w in twin.weights]) / FIXED_POINT)


def test_an_updated_averaged_model_exports_its_mean_weights() -> None:
    """A model file has no running sums: the family writes the mean weights as a plain perceptron,
    which answers as the averaged model does."""
    family = get("sparse_perceptron")
    spec = SparsePerceptronSpec(weights=[F, -F, F // 2, 0], learning_rate=F // 2, averaging=3)
    twin = twin_from_spec(spec)
    assert family.spec_of_twin(twin, spec.classifications) == spec  # not updated yet: the same spec
    for sample, label in (([1, 3], 1), ([0, 2], 0), ([3, 3], 0), ([1], 1)):
        twin.update(sample, label)
    exported = family.spec_of_twin(twin, spec.classifications)
    assert exported.averaging == 0
    c = twin.steps
    assert exported.weights == [round((int(w) * c - u) / c) for w, u in zip(twin.weights, twin.sums or [])]
    samples = [[0], [1], [2], [3], [0, 1], [1, 3], [2, 3], [0, 2, 3]]
    assert twin_from_spec(exported).predict(samples).tolist() == twin.predict(samples).tolist()
