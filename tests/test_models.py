"""The five model contracts against their off-chain twins on a real anvil node.

Property tests (hypothesis) deploy a random model per example, compare the twin's predictions with
the contract's for random samples, apply random updates on both, and compare the whole state read
back from the chain with the twin's. Hypothesis runs in a worker thread and hands each example's
chain work to the session's event loop, so the async fixtures (one node per module) are shared.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np
import pytest
from conftest import DEFAULT_INCENTIVE, revert_reason
from eth_abi import encode as abi_encode
from eth_utils import to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.abi import ContractABI
from contracts.compiler import CompileResult
from contracts.deploy import deploy_system
from contracts.encoders import unit_norm
from contracts.models import (
    DenseNearestCentroidSpec,
    DensePerceptronSpec,
    NaiveBayesSpec,
    SparseNearestCentroidSpec,
    SparsePerceptronSpec,
)
from contracts.rpc import RpcClient
from contracts.transact import Transactor
from contracts.twins import (
    DenseNearestCentroidTwin,
    DensePerceptronTwin,
    ModelRevert,
    NaiveBayesTwin,
    SparseNearestCentroidTwin,
    SparsePerceptronTwin,
    twin_from_chain,
    twin_from_spec,
)
from orchestrator.datasets import synthetic_sparse

F = 10**9
GAS_LIMIT = 30_000_000
EXAMPLES = 40  # per model: each example deploys a model and sends a few transactions


# ---- helpers -------------------------------------------------------------------------------------


async def deploy_model(client: RpcClient, tx: Transactor, compiled: CompileResult, spec: Any) -> tuple[str, ContractABI]:
    """The model contract alone, owned by the deployer (who can then call update directly)."""
    abi = ContractABI(compiled[spec.contract].abi)
    types, args = spec.constructor()
    r = await tx.send(None, compiled[spec.contract].bytecode + abi_encode(types, args), gas=GAS_LIMIT // 2)
    address = to_checksum_address(r["contractAddress"])
    for what, data in spec.init_calls(abi, GAS_LIMIT):
        await tx.send(address, data, gas=GAS_LIMIT // 2, what=what)
    return address, abi


async def chain_predictions(client: RpcClient, address: str, abi: ContractABI, samples: Sequence[Sequence[int]]
                            ) -> list[int]:
    fn = abi.fn("predict")
    replies = await client.batch([("eth_call", [{"to": address, "data": "0x" + fn.encode(list(s)).hex()}, "latest"])
                                  for s in samples])
    out = []
    for r in replies:
        if isinstance(r, Exception):
            raise r
        out.append(fn.decode(bytes.fromhex(r[2:])))
    return out


async def twin_of(client: RpcClient, address: str, abi: ContractABI, spec: Any) -> Any:
    if isinstance(spec, SparsePerceptronSpec):
        return await SparsePerceptronTwin.from_chain(client, address, abi, spec.n_features)
    cls = {DensePerceptronSpec: DensePerceptronTwin, NaiveBayesSpec: NaiveBayesTwin,
           DenseNearestCentroidSpec: DenseNearestCentroidTwin,
           SparseNearestCentroidSpec: SparseNearestCentroidTwin}[type(spec)]
    return await cls.from_chain(client, address, abi)


def state(twin: Any) -> Any:
    """Everything a twin holds, in comparable form."""
    if isinstance(twin, SparsePerceptronTwin):
        return [int(w) for w in twin.weights], twin.intercept, twin.learning_rate
    if isinstance(twin, DensePerceptronTwin):
        return twin.weights, twin.intercept, twin.learning_rate
    if isinstance(twin, NaiveBayesTwin):
        return twin.num_samples, twin.totals, twin.counts.tolist(), twin.smoothing, twin.vocabulary_size
    if isinstance(twin, DenseNearestCentroidTwin):
        return twin.centroids, twin.data_counts
    assert isinstance(twin, SparseNearestCentroidTwin)
    return [[int(v) for v in row] for row in twin.sums], twin.num_samples, twin.sum_squares


async def check_against_chain(client: RpcClient, tx: Transactor, compiled: CompileResult, spec: Any,
                              samples: list[list[int]], updates: list[tuple[list[int], int]]) -> None:
    """Deploy `spec`; twin and chain must agree on state and predictions, before and after updates."""
    address, abi = await deploy_model(client, tx, compiled, spec)
    twin = twin_from_spec(spec)
    assert state(await twin_of(client, address, abi, spec)) == state(twin)
    assert twin.predict(samples).tolist() == await chain_predictions(client, address, abi, samples)
    for sample, label in updates:
        await tx.send(address, abi.encode("update", sample, label), gas=GAS_LIMIT // 2)
        twin.update(sample, label)
    assert state(await twin_of(client, address, abi, spec)) == state(twin)
    assert twin.predict(samples).tolist() == await chain_predictions(client, address, abi, samples)
    assert [twin.predict_one(s) for s in samples] == twin.predict(samples).tolist()


def run_property(loop: asyncio.AbstractEventLoop, strategy: st.SearchStrategy[Any],
                 body: Callable[[Any], Awaitable[None]], examples: int = EXAMPLES) -> None:
    """Run a hypothesis property in this (worker) thread; each example's chain work runs on `loop`."""

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def prop(case: Any) -> None:
        asyncio.run_coroutine_threadsafe(body(case), loop).result(timeout=300)

    prop()


async def property_on_chain(client, tx, compiled, strategy, examples: int = EXAMPLES) -> None:
    loop = asyncio.get_running_loop()

    async def body(case: tuple[Any, list[list[int]], list[tuple[list[int], int]]]) -> None:
        spec, samples, updates = case
        await check_against_chain(client, tx, compiled, spec, samples, updates)

    await asyncio.to_thread(run_property, loop, strategy, body, examples)


# ---- strategies ----------------------------------------------------------------------------------

labels2 = st.integers(0, 1)


@st.composite
def sparse_perceptron_cases(draw: st.DrawFn) -> tuple[SparsePerceptronSpec, list[list[int]], list[tuple[list[int], int]]]:
    n = draw(st.integers(1, 40))
    spec = SparsePerceptronSpec(weights=draw(st.lists(st.integers(-3 * F, 3 * F), min_size=n, max_size=n)),
                                intercept=draw(st.integers(-2 * F, 2 * F)), learning_rate=draw(st.integers(1, 2 * F)))
    sample = st.lists(st.integers(0, n - 1), max_size=12)  # repeats allowed: they count twice
    return spec, draw(st.lists(sample, min_size=1, max_size=8)), draw(st.lists(st.tuples(sample, labels2), max_size=5))


def dense_sample(d: int) -> st.SearchStrategy[list[int]]:
    raw = st.lists(st.integers(-100, 100), min_size=d, max_size=d).filter(any)
    return raw.map(lambda v: unit_norm([float(x) for x in v]))


@st.composite
def dense_perceptron_cases(draw: st.DrawFn) -> tuple[DensePerceptronSpec, list[list[int]], list[tuple[list[int], int]]]:
    d = draw(st.integers(1, 12))
    spec = DensePerceptronSpec(weights=draw(st.lists(st.integers(-5 * F, 5 * F), min_size=d, max_size=d)),
                               intercept=draw(st.integers(-F, F)), learning_rate=draw(st.integers(1, 3 * F)))
    return (spec, draw(st.lists(dense_sample(d), min_size=1, max_size=8)),
            draw(st.lists(st.tuples(dense_sample(d), labels2), max_size=5)))


@st.composite
def naive_bayes_cases(draw: st.DrawFn) -> tuple[NaiveBayesSpec, list[list[int]], list[tuple[list[int], int]]]:
    k = draw(st.integers(1, 4))
    v = draw(st.integers(1, 24))
    counts = [draw(st.dictionaries(st.integers(0, v - 1), st.integers(0, 30), max_size=v)) for _ in range(k)]
    spec = NaiveBayesSpec(class_counts=draw(st.lists(st.integers(0, 15), min_size=k, max_size=k)),
                          feature_counts=counts, vocabulary_size=v, smoothing=draw(st.integers(1, 3 * F)),
                          classifications=tuple(f"c{i}" for i in range(k)))
    sample = st.lists(st.integers(0, v - 1), max_size=40)  # long inputs, repeats allowed
    return (spec, draw(st.lists(sample, min_size=1, max_size=8)),
            draw(st.lists(st.tuples(sample, st.integers(0, k - 1)), max_size=5)))


@st.composite
def dense_centroid_cases(draw: st.DrawFn) -> tuple[DenseNearestCentroidSpec, list[list[int]], list[tuple[list[int], int]]]:
    k = draw(st.integers(1, 4))
    d = draw(st.integers(1, 10))
    centroids = [draw(st.lists(st.integers(-3 * F // 2, 3 * F // 2), min_size=d, max_size=d)) for _ in range(k)]
    spec = DenseNearestCentroidSpec(centroids=centroids,
                                    data_counts=draw(st.lists(st.integers(0, 50), min_size=k, max_size=k)),
                                    classifications=tuple(f"c{i}" for i in range(k)))
    return (spec, draw(st.lists(dense_sample(d), min_size=1, max_size=8)),
            draw(st.lists(st.tuples(dense_sample(d), st.integers(0, k - 1)), max_size=5)))


@st.composite
def sparse_centroid_cases(draw: st.DrawFn) -> tuple[SparseNearestCentroidSpec, list[list[int]], list[tuple[list[int], int]]]:
    k = draw(st.integers(1, 4))
    v = draw(st.integers(1, 24))
    counts = draw(st.lists(st.integers(0, 20), min_size=k, max_size=k))
    sums = [draw(st.dictionaries(st.integers(0, v - 1), st.integers(0, n * F), max_size=v)) if n else {}
            for n in counts]
    spec = SparseNearestCentroidSpec(sums=sums, data_counts=counts, vocabulary_size=v,
                                     classifications=tuple(f"c{i}" for i in range(k)))
    sample = st.sets(st.integers(0, v - 1), max_size=v).map(sorted)
    return (spec, draw(st.lists(sample, min_size=1, max_size=8)),
            draw(st.lists(st.tuples(sample, st.integers(0, k - 1)), max_size=5)))


# ---- properties: twin == chain -------------------------------------------------------------------


async def test_sparse_perceptron_twin_matches_chain(client, tx, compiled):
    await property_on_chain(client, tx, compiled, sparse_perceptron_cases())


async def test_dense_perceptron_twin_matches_chain(client, tx, compiled):
    await property_on_chain(client, tx, compiled, dense_perceptron_cases())


async def test_naive_bayes_twin_matches_chain(client, tx, compiled):
    await property_on_chain(client, tx, compiled, naive_bayes_cases())


async def test_dense_nearest_centroid_twin_matches_chain(client, tx, compiled):
    await property_on_chain(client, tx, compiled, dense_centroid_cases())


async def test_sparse_nearest_centroid_twin_matches_chain(client, tx, compiled):
    await property_on_chain(client, tx, compiled, sparse_centroid_cases())


# ---- every model through the whole system --------------------------------------------------------


def _specs() -> list[tuple[Any, list[int], list[int]]]:
    """(spec, a sample of class 0, a sample of class 1) per model."""
    x0 = unit_norm([1.0, 0.1, 0.0, 0.2])
    x1 = unit_norm([0.1, 1.0, 0.3, 0.0])
    return [
        (SparsePerceptronSpec(weights=[-F, F, -F, F, 0, 0], learning_rate=F // 2), [0, 2], [1, 3]),
        (DensePerceptronSpec(weights=[-F, F, 0, 0]), x0, x1),
        (NaiveBayesSpec(class_counts=[5, 5], feature_counts=[{0: 9, 2: 9}, {1: 9, 3: 9}], vocabulary_size=6),
         [0, 2, 2], [1, 3, 1]),
        (DenseNearestCentroidSpec(centroids=[x0, x1], data_counts=[3, 3]), x0, x1),
        (SparseNearestCentroidSpec(sums=[{0: 3 * F, 2: 2 * F}, {1: 3 * F, 3: 3 * F}], data_counts=[3, 3],
                                   vocabulary_size=6), [0, 2], [1, 3]),
    ]


@pytest.mark.parametrize("index", range(5), ids=[s.contract for s, _, _ in _specs()])
async def test_model_in_deployed_system(client, tx, compiled, dev, chain_id, index):
    spec, x0, x1 = _specs()[index]
    system = await deploy_system(client, tx, compiled, spec, DEFAULT_INCENTIVE, gas_limit=GAS_LIMIT)
    assert system.model_contract == spec.contract
    trainer = system.abis["CollaborativeTrainer"]
    assert await chain_predictions(client, system.trainer, trainer, [x0, x1]) == [0, 1]
    twin = await twin_from_chain(client, system, "latest")
    assert state(twin) == state(twin_from_spec(spec))
    # stranger: every state-changing model method is owner-only (the trainer owns it now)
    reason = await revert_reason(client, system, dev[2].address, system.model, system.model_abi.encode("update", x0, 1))
    assert reason is not None and reason.startswith("NotOwner")
    author = Transactor(client, dev[1], chain_id)
    for sample, label in ((x0, 1), (x1, 1), (x0, 0)):
        await author.send(system.trainer, trainer.encode("addData", sample, label), 4 * 10**12)
        twin.update(sample, label)
    block = await client.block_number()
    assert state(await twin_from_chain(client, system, block)) == state(twin)
    assert twin.predict([x0, x1]).tolist() == await chain_predictions(client, system.trainer, trainer, [x0, x1])


# ---- reverts the twins mirror --------------------------------------------------------------------


async def _expect_revert(client: RpcClient, address: str, abi: ContractABI, sample: list[int], error: str) -> None:
    from contracts.abi import decode_revert
    from contracts.rpc import RpcError

    with pytest.raises(RpcError) as ei:
        await client.eth_call(address, abi.encode("predict", sample))
    assert decode_revert(ei.value.data, abi.errors).split("(")[0] == error


async def test_invalid_samples_revert_like_the_twins(client, tx, compiled):
    x = unit_norm([1.0, 2.0, 3.0])
    cases = [
        (DensePerceptronSpec(weights=[F, F, F]), [[1, 2], [F, F // 2, 0], [-(2**63), 0, 0]],
         ["DimensionMismatch", "NotUnitNorm", "NotUnitNorm"]),
        (DenseNearestCentroidSpec(centroids=[x], data_counts=[1], classifications=("a",)), [x + [0], [F, F, 0]],
         ["DimensionMismatch", "NotUnitNorm"]),
        (NaiveBayesSpec(class_counts=[1, 1], feature_counts=[{}, {}], vocabulary_size=5), [[5], [-1]],
         ["FeatureOutOfRange", "FeatureOutOfRange"]),
        (SparseNearestCentroidSpec(sums=[{}, {}], data_counts=[0, 0], vocabulary_size=5), [[2, 1], [1, 1], [7]],
         ["UnsortedIndices", "UnsortedIndices", "FeatureOutOfRange"]),
        (SparsePerceptronSpec(weights=[1, 2, 3]), [[-1]], ["NegativeFeatureIndex"]),
    ]
    for spec, samples, errors in cases:
        address, abi = await deploy_model(client, tx, compiled, spec)
        twin = twin_from_spec(spec)
        for sample, error in zip(samples, errors):
            await _expect_revert(client, address, abi, sample, error)
            if not isinstance(twin, SparsePerceptronTwin):  # the sparse twin indexes numpy arrays
                with pytest.raises(ModelRevert) as ei:
                    twin.predict_one(sample)
                assert ei.value.error == error


async def test_naive_bayes_tie_goes_to_lower_class_and_empty_classes_never_win(client, tx, compiled):
    spec = NaiveBayesSpec(class_counts=[0, 4, 4], feature_counts=[{}, {1: 3}, {1: 3}], vocabulary_size=3,
                          classifications=("empty", "a", "b"))
    address, abi = await deploy_model(client, tx, compiled, spec)
    assert await chain_predictions(client, address, abi, [[1], [], [0, 2]]) == [1, 1, 1]
    assert twin_from_spec(spec).predict([[1], [], [0, 2]]).tolist() == [1, 1, 1]


async def test_class_addition_emits_add_class(client, tx, compiled):
    spec = NaiveBayesSpec(class_counts=[1], feature_counts=[{0: 2}], vocabulary_size=4, classifications=("a",))
    address, abi = await deploy_model(client, tx, compiled, spec)
    r = await tx.send(address, abi.encode("addClass", "b", 3), gas=1_000_000)
    events = [abi.decode_log(log) for log in r["logs"]]
    assert ("AddClass", {"name": "b", "index": 1}) in events
    await tx.send(address, abi.encode("initializeCounts", 0, [0], [5 << 32 | 1 << 96]), gas=1_000_000)
    twin = await NaiveBayesTwin.from_chain(client, address, abi)
    assert twin.num_samples == [1, 3] and twin.totals == [2, 6]
    assert twin.counts.tolist() == [[2, 0, 0, 0], [5, 1, 0, 0]]
    assert await chain_predictions(client, address, abi, [[1]]) == [1] == twin.predict([[1]]).tolist()


# ---- naive Bayes on long inputs ------------------------------------------------------------------


async def test_naive_bayes_accuracy_on_long_inputs_matches_sklearn(client, tx, compiled):
    from sklearn.naive_bayes import MultinomialNB

    from orchestrator.datasets import to_csr

    ds = synthetic_sparse(1200, 1000, avg_length=60, noise=0.05, seed=3)
    train, test = np.arange(800), np.arange(800, 1200)
    x_train = to_csr([ds.samples[i] for i in train], ds.n_features)
    x_test = to_csr([ds.samples[i] for i in test], ds.n_features)
    y_train, y_test = ds.labels[train], ds.labels[test]
    assert np.mean([len(ds.samples[i]) for i in test]) > 50  # long inputs: the reference's NB fails here

    sk = MultinomialNB(alpha=1.0).fit(x_train, y_train)
    sk_accuracy = float((sk.predict(x_test) == y_test).mean())

    counts = np.asarray(x_train[y_train == 0].sum(axis=0)).ravel(), np.asarray(x_train[y_train == 1].sum(axis=0)).ravel()
    spec = NaiveBayesSpec(class_counts=[int((y_train == c).sum()) for c in (0, 1)],
                          feature_counts=[{int(j): int(c[j]) for j in np.flatnonzero(c)} for c in counts],
                          vocabulary_size=ds.n_features, smoothing=F)
    twin = twin_from_spec(spec)
    test_samples = [list(ds.samples[i]) for i in test]
    ours = twin.predict(test_samples)
    our_accuracy = float((ours == y_test).mean())
    print(f"naive Bayes on {len(test)} long inputs: ours {our_accuracy:.4f}, scikit-learn {sk_accuracy:.4f}")
    assert sk_accuracy > 0.7
    assert abs(our_accuracy - sk_accuracy) <= 0.02
    assert 0 < ours.sum() < len(ours)  # both classes predicted (the reference's NB says 0 for all)

    address, abi = await deploy_model(client, tx, compiled, spec)
    picks = list(range(0, len(test_samples), 16))
    assert await chain_predictions(client, address, abi, [test_samples[i] for i in picks]) == ours[picks].tolist()


async def test_update_rejects_negative_and_out_of_range_indices(client, tx, compiled):
    """A negative int64 is 2^256 - 1 as a word: it must not pass for a sentinel (it once did)."""
    from contracts.abi import decode_revert
    from contracts.rpc import RpcError

    for spec in (NaiveBayesSpec(class_counts=[1, 1], feature_counts=[{}, {}], vocabulary_size=5),
                 SparseNearestCentroidSpec(sums=[{}, {}], data_counts=[0, 0], vocabulary_size=5)):
        address, abi = await deploy_model(client, tx, compiled, spec)
        for sample in ([-1], [1, -1], [5]):
            call = {"from": tx.account.address, "to": address, "data": "0x" + abi.encode("update", sample, 0).hex()}
            with pytest.raises(RpcError) as ei:
                await client.call("eth_call", call, "latest")
            assert decode_revert(ei.value.data, abi.errors).startswith("FeatureOutOfRange"), sample
