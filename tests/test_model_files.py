"""Model files: round trips of every type, clear errors, exports from scikit-learn and numpy, and
loading a deployed system by its trainer address (refused unless the trainer owns its parts)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from conftest import COST_WEIGHT, DEFAULT_INCENTIVE
from eth_abi import encode as abi_encode
from eth_utils import to_checksum_address

from contracts.deploy import DeploymentError, deploy_system
from contracts.model_files import (
    ModelFileError,
    export_sklearn,
    load_model,
    load_system,
    model_from_dict,
    model_to_dict,
    naive_bayes_dict,
    nearest_centroid_dict,
    perceptron_dict,
    save_model,
)
from contracts.models import (
    DenseNearestCentroidSpec,
    DensePerceptronSpec,
    NaiveBayesSpec,
    SparseNearestCentroidSpec,
    SparsePerceptronSpec,
)
from contracts.twins import twin_from_spec

F = 10**9


def specs():
    return [
        SparsePerceptronSpec(weights=[F, -3 * F // 2, 123_456_789, 0], intercept=-F // 4, learning_rate=F // 10),
        DensePerceptronSpec(weights=[2 * F, -7, 5 * F // 3], intercept=F, learning_rate=F),
        NaiveBayesSpec(class_counts=[3, 4, 0], feature_counts=[{0: 2, 5: 1}, {5: 7}, {}], vocabulary_size=9,
                       smoothing=F // 2, classifications=("a", "b", "c")),
        DenseNearestCentroidSpec(centroids=[[F // 3, -F // 7], [0, 999_999_999]], data_counts=[3, 9],
                                 classifications=("left", "right")),
        SparseNearestCentroidSpec(sums=[{0: 3 * F, 4: F}, {1: 2 * F}], data_counts=[3, 2], vocabulary_size=6),
    ]


@pytest.mark.parametrize("spec", specs(), ids=lambda s: s.contract)
def test_round_trip_through_a_file(spec, tmp_path):
    path = tmp_path / "model.json"
    save_model(spec, path)
    data = json.loads(path.read_text())
    assert data["type"] in ("sparse perceptron", "dense perceptron", "naive bayes",
                            "dense nearest centroid classifier", "sparse nearest centroid classifier")
    loaded = load_model(path)
    assert type(loaded) is type(spec)
    assert loaded == spec


def test_reference_style_files(tmp_path):
    sparse = model_from_dict({"type": "sparse perceptron", "classifications": ["neg", "pos"], "weights": [0.5],
                              "sparseWeights": {"3": -1.25}, "intercept": 0.1})
    assert sparse.weights == [F // 2, 0, 0, -5 * F // 4]
    assert sparse.learning_rate == F // 2 and sparse.intercept == F // 10  # default learning rate 0.5
    indexed = model_from_dict({"type": "sparse perceptron", "classifications": ["n", "p"], "weights": [1, 2],
                               "featureIndices": [4, 1], "intercept": 0, "learningRate": 1})
    assert indexed.weights == [0, 2 * F, 0, 0, F]
    dense = model_from_dict({"type": "perceptron", "classifications": ["n", "p"], "weights": [0.1, 0.2],
                             "intercept": 0})
    assert isinstance(dense, DensePerceptronSpec)
    nb = model_from_dict({"type": "naive bayes", "classifications": ["n", "p"], "classCounts": [2, 3],
                          "featureCounts": [[[0, 1], [2, 4]], [[1, 3]]], "totalNumFeatures": 5})
    assert nb.feature_counts == [{0: 1, 2: 4}, {1: 3}] and nb.smoothing == F
    ncc = model_from_dict({"type": "nearest centroid classifier",
                           "centroids": {"x": {"centroid": [0.5, 0.5], "dataCount": 2},
                                         "y": {"centroid": [-0.5, 0.25], "dataCount": 1}}})
    assert ncc.classifications == ("x", "y") and ncc.centroids[1] == [-F // 2, F // 4]
    sncc = model_from_dict({"type": "sparse nearest centroid classifier",
                            "centroids": {"x": {"centroid": {"2": 0.5, "7": 1.0}, "dataCount": 4},
                                          "y": {"centroid": {"1": 1}, "dataCount": 1}}})
    assert sncc.vocabulary_size == 8 and sncc.sums == [{2: 2 * F, 7: 4 * F}, {1: F}]


@pytest.mark.parametrize(("data", "field"), [
    ({"type": "sparse perceptron", "classifications": ["a", "b"], "weights": [1, "x"]}, "weights[1]"),
    ({"type": "sparse perceptron", "classifications": ["a"], "weights": [1]}, "classifications"),
    ({"type": "sparse perceptron", "classifications": ["a", "b"], "sparseWeights": {"-2": 1}}, "sparseWeights"),
    ({"type": "sparse perceptron", "classifications": ["a", "b"], "weights": [1], "featureIndices": [1, 2]},
     "featureIndices"),
    ({"type": "dense perceptron", "classifications": ["a", "b"]}, "weights"),
    ({"type": "naive bayes", "classifications": ["a", "b"], "classCounts": [1, 2], "featureCounts": [[[0, 1]], []]},
     "totalNumFeatures"),
    ({"type": "naive bayes", "classifications": ["a", "b"], "classCounts": [1, 2],
      "featureCounts": [[[0, 1.5]], []], "totalNumFeatures": 3}, "featureCounts[0][0]"),
    ({"type": "naive bayes", "classifications": ["a", "b"], "classCounts": [1],
      "featureCounts": [[], []], "totalNumFeatures": 3}, "classCounts"),
    ({"type": "naive bayes", "classifications": ["a", "b"], "classCounts": [1, 1],
      "featureCounts": [[[7, 1]], []], "totalNumFeatures": 3}, "featureCounts[0][0]"),
    ({"type": "dense nearest centroid classifier", "centroids": {"a": {"centroid": [1, 2]},
                                                                "b": {"centroid": [1]}}}, "centroids[1]"),
    ({"type": "sparse nearest centroid classifier", "centroids": {"a": {"centroid": [1]}}}, "centroids['a'].centroid"),
    ({"type": "sparse nearest centroid classifier", "centroids": {"a": {"centroid": {"1": 1}, "dataCount": 1}},
      "numFeatures": 1}, "numFeatures"),
    ({"type": "random forest"}, "type"),
    ({"classifications": ["a", "b"]}, "type"),
])
def test_errors_name_the_file_and_field(tmp_path, data, field):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ModelFileError) as ei:
        load_model(path)
    message = str(ei.value)
    assert message.startswith(str(path)), message
    assert field in message, message


def test_unreadable_files(tmp_path):
    with pytest.raises(ModelFileError, match="no such file"):
        load_model(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ModelFileError, match="broken.json: not valid JSON"):
        load_model(tmp_path / "broken.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ModelFileError, match="JSON object"):
        load_model(tmp_path / "list.json")


# ---- exports -------------------------------------------------------------------------------------


def _binary_data(seed: int = 0, n: int = 400, d: int = 30):
    rng = np.random.default_rng(seed)
    x = (rng.random((n, d)) < 0.2).astype(float)
    w = rng.normal(size=d)
    y = (x @ w > 0).astype(int)
    return x, y


def _agreement(twin, samples, expected) -> float:
    return float((twin.predict(samples) == np.asarray(expected)).mean())


def test_export_sklearn_perceptron_sparse_and_dense():
    from sklearn.linear_model import Perceptron

    x, y = _binary_data()
    clf = Perceptron(eta0=0.5, random_state=0, max_iter=30, tol=None).fit(x, y)
    spec = model_from_dict(export_sklearn(clf, sparse=True))
    assert isinstance(spec, SparsePerceptronSpec) and spec.learning_rate == F // 2
    samples = [list(np.flatnonzero(row)) for row in x]
    assert _agreement(twin_from_spec(spec), samples, clf.predict(x)) > 0.99

    rows = [row / np.linalg.norm(row) for row in x if row.any()]
    dense = model_from_dict(export_sklearn(clf, sparse=False))
    assert isinstance(dense, DensePerceptronSpec)
    from contracts.encoders import unit_norm

    encoded = [unit_norm(list(r)) for r in rows]
    assert _agreement(twin_from_spec(dense), encoded, clf.predict(np.array(rows))) > 0.99


def test_export_sklearn_naive_bayes_and_nearest_centroid():
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.neighbors import NearestCentroid

    x, y = _binary_data(1)
    nb = MultinomialNB(alpha=1.0).fit(x, y)
    spec = model_from_dict(export_sklearn(nb, classifications=["neg", "pos"]))
    assert isinstance(spec, NaiveBayesSpec) and spec.classifications == ("neg", "pos")
    samples = [list(np.flatnonzero(row)) for row in x]
    assert _agreement(twin_from_spec(spec), samples, nb.predict(x)) == 1.0

    nc = NearestCentroid().fit(x, y)
    sparse = model_from_dict(export_sklearn(nc, sparse=True, y=y))
    assert isinstance(sparse, SparseNearestCentroidSpec) and sparse.data_counts == [int((y == 0).sum()), int(y.sum())]
    assert _agreement(twin_from_spec(sparse), samples, nc.predict(x)) > 0.99
    with pytest.raises(ModelFileError, match="data_counts or y"):
        export_sklearn(nc)


def test_export_numpy_arrays():
    assert model_from_dict(perceptron_dict([0.5, -1.0], 0.25, sparse=False)) == \
        DensePerceptronSpec(weights=[F // 2, -F], intercept=F // 4, learning_rate=F // 2)
    nb = model_from_dict(naive_bayes_dict([2, 1], np.array([[1, 0, 3], [0, 2, 0]]), 0.5))
    assert nb.feature_counts == [{0: 1, 2: 3}, {1: 2}] and nb.vocabulary_size == 3 and nb.smoothing == F // 2
    with pytest.raises(ModelFileError, match="integers"):
        naive_bayes_dict([1, 1], np.array([[0.5, 0.0], [1.0, 0.0]]))
    ncc = model_from_dict(nearest_centroid_dict(np.array([[0.1, 0.2], [0.3, -0.4]]), [5, 6], classifications=["a", "b"]))
    assert ncc == DenseNearestCentroidSpec(centroids=[[F // 10, F // 5], [3 * F // 10, -2 * F // 5]],
                                           data_counts=[5, 6], classifications=("a", "b"))
    sncc = model_from_dict(nearest_centroid_dict(np.array([[0.5, 0.0], [0.0, 0.25]]), [2, 4], sparse=True))
    assert sncc.sums == [{0: F}, {1: F}] and sncc.vocabulary_size == 2
    assert model_to_dict(sncc)["numFeatures"] == 2


# ---- loading a deployed system -------------------------------------------------------------------


@pytest.mark.parametrize("spec", specs(), ids=lambda s: s.contract)
async def test_load_system_recognises_each_model(client, tx, compiled, spec):
    system = await deploy_system(client, tx, compiled, spec, DEFAULT_INCENTIVE, gas_limit=30_000_000)
    n = spec.n_features if isinstance(spec, SparsePerceptronSpec) else None
    loaded = await load_system(client, system.trainer, compiled, n_features=n)
    assert loaded.model_contract == spec.contract and loaded.incentive_contract == "Stakeable"
    assert loaded.addresses() == system.addresses()
    assert loaded.n_features == spec.n_features and loaded.deployer == system.deployer
    if isinstance(spec, SparsePerceptronSpec):
        with pytest.raises(DeploymentError, match="n_features"):
            await load_system(client, system.trainer, compiled)


async def test_load_system_refuses_a_trainer_without_its_components(client, tx, compiled):
    system = await deploy_system(client, tx, compiled, specs()[2], DEFAULT_INCENTIVE, gas_limit=30_000_000)
    abis = system.abis
    # A second trainer wired to fresh components, one of which stays with the deployer.
    r = await tx.send(None, compiled["DataHandler"].bytecode)
    handler = to_checksum_address(r["contractAddress"])
    r = await tx.send(None, compiled["Stakeable"].bytecode + abi_encode(["uint256"] * 4, [60, 120, 180, COST_WEIGHT]))
    im = to_checksum_address(r["contractAddress"])
    spec = specs()[2]
    r = await tx.send(None, compiled["NaiveBayes"].bytecode + abi_encode(*spec.constructor()))
    model = to_checksum_address(r["contractAddress"])
    r = await tx.send(None, compiled["CollaborativeTrainer"].bytecode + abi_encode(
        ["string", "string", "string", "address", "address", "address"], ["x", "", "none", handler, im, model]))
    trainer = to_checksum_address(r["contractAddress"])
    await tx.send(handler, abis["DataHandler"].encode("transferOwnership", trainer))
    await tx.send(im, abis["Stakeable"].encode("transferOwnership", trainer))
    with pytest.raises(DeploymentError, match="owned by"):
        await load_system(client, trainer, compiled)
    await tx.send(model, abis["NaiveBayes"].encode("transferOwnership", trainer))
    loaded = await load_system(client, trainer, compiled)
    assert dataclasses.replace(loaded, block=0).model == model
    with pytest.raises(DeploymentError, match="CollaborativeTrainer"):
        await load_system(client, system.model, compiled)
