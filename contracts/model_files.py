"""Model files in the reference's JSON format, exports from scikit-learn or numpy, and loading a
deployed system by its trainer address.

Model file types and fields (real numbers are plain JSON numbers; the loader turns them into the
contracts' fixed point, x1e9 rounded half up):

* "sparse perceptron": classifications, weights (list; index = feature) and/or sparseWeights
  ({"index": weight}), intercept, learningRate (default 0.5), featureIndices (optional: weights[i]
  belongs to feature featureIndices[i]).
* "dense perceptron" (also "perceptron"): classifications, weights, intercept, learningRate.
* "naive bayes": classifications, classCounts, featureCounts (per class, a list of [index, count]),
  totalNumFeatures (the vocabulary size), smoothingFactor (default 1 = Laplace).
* "dense nearest centroid classifier" (also "nearest centroid classifier"):
  centroids = {class name: {"centroid": [values], "dataCount": n}}.
* "sparse nearest centroid classifier": centroids = {class name: {"centroid": {"index": value},
  "dataCount": n}}; ours also reads and writes "numFeatures" (the vocabulary size; without it, the
  largest index + 1).

Errors name the file and the offending field (`ModelFileError`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from eth_utils import to_checksum_address

from .compiler import CompileResult
from .deploy import DeployedSystem, DeploymentError, abis_of, verify_system
from .encoders import round_half_up
from .models import (
    FIXED_POINT,
    INT64,
    INT80,
    DenseNearestCentroidSpec,
    DensePerceptronSpec,
    ModelSpecError,
    NaiveBayesSpec,
    SparseNearestCentroidSpec,
    SparsePerceptronSpec,
)
from .rpc import RpcClient, RpcError

ModelSpecT = (SparsePerceptronSpec | DensePerceptronSpec | NaiveBayesSpec | DenseNearestCentroidSpec
              | SparseNearestCentroidSpec)

MAX_DENSE_SPARSE_WEIGHTS = 1 << 24  # a sparse perceptron's weights are stored as one dense vector
DEFAULT_LEARNING_RATE = 0.5
DEFAULT_SMOOTHING = 1.0

TYPE_ALIASES = {
    "sparse perceptron": "sparse perceptron",
    "dense perceptron": "dense perceptron",
    "perceptron": "dense perceptron",
    "naive bayes": "naive bayes",
    "dense nearest centroid classifier": "dense nearest centroid classifier",
    "nearest centroid classifier": "dense nearest centroid classifier",
    "sparse nearest centroid classifier": "sparse nearest centroid classifier",
}


class ModelFileError(ValueError):
    pass


# ==================================================================================================
# Loading
# ==================================================================================================


class _Reader:
    """Field access with errors that name the file and the field."""

    def __init__(self, data: Any, source: str):
        self.source = source
        if not isinstance(data, dict):
            self.fail("", f"a model file holds a JSON object, got {type(data).__name__}")
        self.data: dict[str, Any] = data

    def fail(self, field: str, problem: str) -> None:
        where = f"{self.source}: {field}: " if field else f"{self.source}: "
        raise ModelFileError(where + problem)

    def get(self, field: str, default: Any = ..., *, kind: type | tuple[type, ...] | None = None) -> Any:
        if field not in self.data:
            if default is ...:
                self.fail(field, "missing")
            return default
        value = self.data[field]
        if kind is not None and not isinstance(value, kind):
            self.fail(field, f"expected {_kind_name(kind)}, got {type(value).__name__}")
        return value

    def real(self, field: str, value: Any, bounds: tuple[int, int] | None = None) -> int:
        """A JSON number as fixed point x1e9; `bounds` the contract's integer type for it, so a value
        it cannot hold is named here, in the file's units, rather than as a raw integer later."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(field, f"expected a number, got {value!r}")
        fixed = value * FIXED_POINT if isinstance(value, int) else round_half_up(value * FIXED_POINT)
        if bounds is not None and not bounds[0] <= fixed <= bounds[1]:
            bits = {INT80: "int80", INT64: "int64"}.get(bounds, "integer")
            self.fail(field, f"{value!r} is out of range: the contract holds it as {bits} fixed point "
                             f"(x1e9), i.e. between {bounds[0] / FIXED_POINT:.6g} and {bounds[1] / FIXED_POINT:.6g}")
        return fixed

    def count(self, field: str, value: Any) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.fail(field, f"expected a non-negative integer, got {value!r}")
        return int(value)

    def index(self, field: str, key: Any) -> int:
        """A feature index: an integer, or a string of digits (JSON object keys are strings)."""
        if isinstance(key, int) and not isinstance(key, bool):
            idx = key
        elif isinstance(key, float) and key.is_integer():
            idx = int(key)
        elif isinstance(key, str) and key.strip().isdigit():
            idx = int(key)
        else:
            self.fail(field, f"feature index {key!r} is not a non-negative integer")
        if idx < 0:
            self.fail(field, f"feature index {key!r} is negative")
        return idx

    def classifications(self) -> tuple[str, ...]:
        names = self.get("classifications", kind=list)
        if not names or not all(isinstance(n, str) for n in names):
            self.fail("classifications", "expected a non-empty list of class names")
        return tuple(names)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _sparse_perceptron(r: _Reader) -> SparsePerceptronSpec:
    classes = r.classifications()
    if len(classes) != 2:
        r.fail("classifications", f"a perceptron has 2 classes, got {len(classes)}")
    dense = r.get("weights", [], kind=list)
    sparse = r.get("sparseWeights", {}, kind=dict)
    indices = r.get("featureIndices", None, kind=(list, type(None)))
    pairs: dict[int, int] = {}
    if indices is not None:
        if len(indices) != len(dense) + len(sparse):
            r.fail("featureIndices", f"{len(indices)} indices for {len(dense) + len(sparse)} weights")
        if sparse:
            r.fail("featureIndices", "cannot be combined with sparseWeights")
        for i, (idx, w) in enumerate(zip(indices, dense)):
            pairs[r.index(f"featureIndices[{i}]", idx)] = r.real(f"weights[{i}]", w, INT80)
    else:
        for i, w in enumerate(dense):
            pairs[i] = r.real(f"weights[{i}]", w, INT80)
        for key, w in sparse.items():
            pairs[r.index(f"sparseWeights[{key!r}]", key)] = r.real(f"sparseWeights[{key!r}]", w, INT80)
    if not pairs:
        r.fail("weights", "no weights given")
    n = max(pairs) + 1
    if n > MAX_DENSE_SPARSE_WEIGHTS:
        r.fail("featureIndices" if indices is not None else "sparseWeights",
               f"feature index {n - 1} is too large: the weights are deployed as one vector of at most "
               f"{MAX_DENSE_SPARSE_WEIGHTS} values (reduce hashed indices modulo a feature count)")
    weights = [0] * n
    for idx, w in pairs.items():
        weights[idx] = w
    return SparsePerceptronSpec(weights=weights, intercept=r.real("intercept", r.get("intercept", 0), INT80),
                                learning_rate=r.real("learningRate", r.get("learningRate", DEFAULT_LEARNING_RATE), INT80),
                                classifications=(classes[0], classes[1]))


def _dense_perceptron(r: _Reader) -> DensePerceptronSpec:
    classes = r.classifications()
    if len(classes) != 2:
        r.fail("classifications", f"a perceptron has 2 classes, got {len(classes)}")
    weights = [r.real(f"weights[{i}]", w, INT80) for i, w in enumerate(r.get("weights", kind=list))]
    indices = r.get("featureIndices", None, kind=(list, type(None)))
    if indices is not None and list(indices) != list(range(len(weights))):
        r.fail("featureIndices", "a dense perceptron takes the whole vector: feature indices must be 0..n-1")
    return DensePerceptronSpec(weights=weights, intercept=r.real("intercept", r.get("intercept", 0), INT80),
                               learning_rate=r.real("learningRate", r.get("learningRate", DEFAULT_LEARNING_RATE), INT80),
                               classifications=(classes[0], classes[1]))


def _naive_bayes(r: _Reader) -> NaiveBayesSpec:
    classes = r.classifications()
    class_counts = [r.count(f"classCounts[{i}]", c) for i, c in enumerate(r.get("classCounts", kind=list))]
    if len(class_counts) != len(classes):
        r.fail("classCounts", f"{len(class_counts)} counts for {len(classes)} classes")
    raw = r.get("featureCounts", kind=list)
    vocabulary = r.count("totalNumFeatures", r.get("totalNumFeatures"))
    if len(raw) != len(classes):
        r.fail("featureCounts", f"{len(raw)} classes, expected {len(classes)}")
    feature_counts: list[dict[int, int]] = []
    for c, pairs in enumerate(raw):
        counts: dict[int, int] = {}
        if not isinstance(pairs, list):
            r.fail(f"featureCounts[{c}]", "expected a list of [index, count] pairs")
        for i, pair in enumerate(pairs):
            where = f"featureCounts[{c}][{i}]"
            if not isinstance(pair, list) or len(pair) != 2:
                r.fail(where, f"expected an [index, count] pair, got {pair!r}")
            idx = r.index(where, pair[0])
            if idx >= vocabulary:
                r.fail(where, f"feature index {idx} is not below totalNumFeatures ({vocabulary})")
            counts[idx] = counts.get(idx, 0) + r.count(where, pair[1])
        feature_counts.append(counts)
    smoothing = r.real("smoothingFactor", r.get("smoothingFactor", DEFAULT_SMOOTHING))
    return NaiveBayesSpec(class_counts=class_counts, feature_counts=feature_counts, vocabulary_size=vocabulary,
                          smoothing=smoothing, classifications=classes)


def _centroids(r: _Reader) -> list[tuple[str, Any, int]]:
    centroids = r.get("centroids", kind=dict)
    if not centroids:
        r.fail("centroids", "no classes")
    out = []
    for name, info in centroids.items():
        where = f"centroids[{name!r}]"
        if not isinstance(info, dict) or "centroid" not in info:
            r.fail(where, "expected {\"centroid\": ..., \"dataCount\": n}")
        out.append((name, info["centroid"], r.count(f"{where}.dataCount", info.get("dataCount", 0))))
    return out


def _dense_centroid(r: _Reader) -> DenseNearestCentroidSpec:
    classes, centroids, counts = [], [], []
    for name, centroid, n in _centroids(r):
        if not isinstance(centroid, list):
            r.fail(f"centroids[{name!r}].centroid", "expected a list of values")
        classes.append(name)
        centroids.append([r.real(f"centroids[{name!r}].centroid[{i}]", v, INT64) for i, v in enumerate(centroid)])
        counts.append(n)
    return DenseNearestCentroidSpec(centroids=centroids, data_counts=counts, classifications=tuple(classes))


def _sparse_centroid(r: _Reader) -> SparseNearestCentroidSpec:
    classes, sums, counts = [], [], []
    top = -1
    for name, centroid, n in _centroids(r):
        where = f"centroids[{name!r}].centroid"
        if not isinstance(centroid, dict):
            r.fail(where, "expected an object {\"index\": value}")
        per_class: dict[int, int] = {}
        for key, value in centroid.items():
            j = r.index(f"{where}[{key!r}]", key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                r.fail(f"{where}[{key!r}]", f"expected a non-negative number, got {value!r}")
            # s = 1e9 * value * n: exact for centroids of binary data (value * n is a count)
            per_class[j] = round_half_up(value * FIXED_POINT * n)
            top = max(top, j)
        classes.append(name)
        sums.append(per_class)
        counts.append(n)
    vocabulary = r.count("numFeatures", r.get("numFeatures", top + 1))
    if vocabulary <= top:
        r.fail("numFeatures", f"{vocabulary} is not above the largest feature index {top}")
    return SparseNearestCentroidSpec(sums=sums, data_counts=counts, vocabulary_size=vocabulary,
                                     classifications=tuple(classes))


_LOADERS = {
    "sparse perceptron": _sparse_perceptron,
    "dense perceptron": _dense_perceptron,
    "naive bayes": _naive_bayes,
    "dense nearest centroid classifier": _dense_centroid,
    "sparse nearest centroid classifier": _sparse_centroid,
}


def model_from_dict(data: Any, source: str = "<model>") -> ModelSpecT:
    """A model spec from a parsed model file."""
    r = _Reader(data, source)
    kind = r.get("type", kind=str)
    canonical = TYPE_ALIASES.get(kind.strip().lower())
    if canonical is None:
        r.fail("type", f"unknown model type {kind!r}; known: {', '.join(sorted(set(TYPE_ALIASES.values())))}")
    try:
        return _LOADERS[canonical](r)
    except ModelSpecError as e:
        raise ModelFileError(f"{source}: {e}") from None


def load_model(path: str | Path) -> ModelSpecT:
    """Read a model file (JSON) into the spec the deployer takes."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except json.JSONDecodeError as e:
        raise ModelFileError(f"{path}: not valid JSON: {e}") from None
    return model_from_dict(data, str(path))


# ==================================================================================================
# Saving and exporting
# ==================================================================================================


def _real(v: int) -> float | int:
    return v // FIXED_POINT if v % FIXED_POINT == 0 else v / FIXED_POINT


def model_to_dict(spec: ModelSpecT) -> dict[str, Any]:
    """The reference's JSON form of a model spec (fixed point back to real numbers)."""
    if isinstance(spec, SparsePerceptronSpec | DensePerceptronSpec):
        kind = "sparse perceptron" if isinstance(spec, SparsePerceptronSpec) else "dense perceptron"
        return {"type": kind, "classifications": list(spec.classifications),
                "weights": [_real(w) for w in spec.weights], "intercept": _real(spec.intercept),
                "learningRate": _real(spec.learning_rate)}
    if isinstance(spec, NaiveBayesSpec):
        return {"type": "naive bayes", "classifications": list(spec.classifications),
                "classCounts": list(spec.class_counts),
                "featureCounts": [[[j, n] for j, n in sorted(c.items()) if n] for c in spec.feature_counts],
                "totalNumFeatures": spec.vocabulary_size, "smoothingFactor": _real(spec.smoothing)}
    if isinstance(spec, DenseNearestCentroidSpec):
        return {"type": "dense nearest centroid classifier",
                "centroids": {name: {"centroid": [_real(v) for v in c], "dataCount": n}
                              for name, c, n in zip(spec.classifications, spec.centroids, spec.data_counts)}}
    if isinstance(spec, SparseNearestCentroidSpec):
        return {"type": "sparse nearest centroid classifier", "numFeatures": spec.vocabulary_size,
                "centroids": {name: {"centroid": {str(j): s / (FIXED_POINT * n) for j, s in sorted(c.items()) if s},
                                     "dataCount": n}
                              for name, c, n in zip(spec.classifications, spec.sums, spec.data_counts)}}
    raise ModelFileError(f"cannot save a {type(spec).__name__}")


def save_model(spec: ModelSpecT, path: str | Path) -> None:
    Path(path).write_text(json.dumps(model_to_dict(spec), indent=1) + "\n")


def _names(classifications: Sequence[str] | None, n: int) -> list[str]:
    if classifications is None:
        return ["Negative", "Positive"] if n == 2 else [str(i) for i in range(n)]
    if len(classifications) != n:
        raise ModelFileError(f"{len(classifications)} class names for {n} classes")
    return [str(c) for c in classifications]


def perceptron_dict(weights: Sequence[float], intercept: float = 0.0, learning_rate: float = DEFAULT_LEARNING_RATE,
                    *, sparse: bool = True, classifications: Sequence[str] | None = None) -> dict[str, Any]:
    return {"type": "sparse perceptron" if sparse else "dense perceptron",
            "classifications": _names(classifications, 2), "weights": [float(w) for w in weights],
            "intercept": float(intercept), "learningRate": float(learning_rate)}


def naive_bayes_dict(class_counts: Sequence[float], feature_counts: Any, smoothing: float = DEFAULT_SMOOTHING,
                     *, classifications: Sequence[str] | None = None) -> dict[str, Any]:
    """feature_counts: a (classes x vocabulary) array of integral counts."""
    counts = np.asarray(feature_counts, dtype=float)
    if counts.ndim != 2 or counts.shape[0] != len(class_counts):
        raise ModelFileError(f"feature counts of shape {counts.shape} do not match {len(class_counts)} classes")
    if not np.all(counts == np.round(counts)) or counts.min(initial=0) < 0:
        raise ModelFileError("feature counts must be non-negative integers (the contract counts occurrences)")
    return {"type": "naive bayes", "classifications": _names(classifications, len(class_counts)),
            "classCounts": [int(round(c)) for c in class_counts],
            "featureCounts": [[[int(j), int(row[j])] for j in np.flatnonzero(row)] for row in counts],
            "totalNumFeatures": int(counts.shape[1]), "smoothingFactor": float(smoothing)}


def nearest_centroid_dict(centroids: Any, data_counts: Sequence[int], *, sparse: bool = False,
                          classifications: Sequence[str] | None = None) -> dict[str, Any]:
    c = np.asarray(centroids, dtype=float)
    if c.ndim != 2 or c.shape[0] != len(data_counts):
        raise ModelFileError(f"centroids of shape {c.shape} do not match {len(data_counts)} classes")
    names = _names(classifications, c.shape[0])
    if sparse:
        return {"type": "sparse nearest centroid classifier", "numFeatures": int(c.shape[1]),
                "centroids": {name: {"centroid": {str(j): float(row[j]) for j in np.flatnonzero(row)},
                                     "dataCount": int(n)} for name, row, n in zip(names, c, data_counts)}}
    return {"type": "dense nearest centroid classifier",
            "centroids": {name: {"centroid": [float(v) for v in row], "dataCount": int(n)}
                          for name, row, n in zip(names, c, data_counts)}}


def export_sklearn(model: Any, *, sparse: bool = True, classifications: Sequence[str] | None = None,
                   data_counts: Sequence[int] | None = None, y: Any = None) -> dict[str, Any]:
    """A trained scikit-learn Perceptron (binary), MultinomialNB or NearestCentroid as a model file dict.

    `sparse` picks the sparse or dense contract for the perceptron and the nearest centroid model.
    NearestCentroid does not keep its class sizes: pass `data_counts` or the training labels `y`."""
    from sklearn.linear_model import Perceptron
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.neighbors import NearestCentroid

    names = classifications if classifications is not None else [str(c) for c in getattr(model, "classes_", [])]
    if isinstance(model, Perceptron):
        if model.coef_.shape[0] != 1:
            raise ModelFileError("only a binary Perceptron maps to the perceptron contracts")
        return perceptron_dict(model.coef_[0], float(model.intercept_[0]), float(model.eta0), sparse=sparse,
                               classifications=names)
    if isinstance(model, MultinomialNB):
        alpha = model.alpha
        if not np.isscalar(alpha):
            raise ModelFileError("a per-feature alpha has no counterpart in the contract")
        return naive_bayes_dict(model.class_count_, model.feature_count_, float(alpha), classifications=names)
    if isinstance(model, NearestCentroid):
        if data_counts is None:
            if y is None:
                raise ModelFileError("NearestCentroid does not keep class sizes: pass data_counts or y")
            labels = np.asarray(y)
            data_counts = [int((labels == c).sum()) for c in model.classes_]
        return nearest_centroid_dict(model.centroids_, data_counts, sparse=sparse, classifications=names)
    raise ModelFileError(f"cannot export a {type(model).__name__}")


# ==================================================================================================
# Loading a deployed system
# ==================================================================================================


def _selectors_in_code(code: bytes, selectors: Sequence[bytes]) -> bool:
    # The dispatcher compares the call's selector with each function's as a PUSH4 operand.
    return all(b"\x63" + s in code for s in selectors)


def _identify(code: bytes, compiled: CompileResult, candidates: Sequence[str]) -> str | None:
    """The candidate artifact whose functions all appear in `code` (the one with the most, if several)."""
    best, best_n = None, -1
    for name in candidates:
        if name not in compiled.artifacts:
            continue
        selectors = [bytes.fromhex(f"{_selector(item):08x}") for item in compiled[name].abi
                     if item.get("type") == "function"]
        if selectors and _selectors_in_code(code, selectors) and len(selectors) > best_n:
            best, best_n = name, len(selectors)
    return best


def _selector(item: dict[str, Any]) -> int:
    from .abi import _type_str
    from .signing import keccak256

    sig = f"{item['name']}({','.join(_type_str(p) for p in item['inputs'])})"
    return int.from_bytes(keccak256(sig.encode())[:4], "big")


async def load_system(client: RpcClient, trainer_address: str, compiled: CompileResult, *,
                      n_features: int | None = None, block: int | str = "latest") -> DeployedSystem:
    """The deployed system behind a trainer, verified: it must own all three of its components
    (`verify_system`), else `DeploymentError`. The model and mechanism contracts are recognised from
    their code. A sparse perceptron does not store its width, so pass `n_features` for one."""
    from .models import MODEL_CONTRACTS

    abis = abis_of(compiled)
    trainer = to_checksum_address(trainer_address)
    t_abi = abis["CollaborativeTrainer"]
    tag = hex(block) if isinstance(block, int) else block
    try:
        addrs = [to_checksum_address(t_abi.fn(g).decode(await client.eth_call(trainer, t_abi.encode(g), tag)))
                 for g in ("dataHandler", "incentiveMechanism", "classifier")]
    except (RpcError, ValueError) as e:
        raise DeploymentError(f"{trainer} does not answer as a CollaborativeTrainer: {e}") from e
    data_handler, incentive, model = addrs
    codes = [bytes.fromhex((await client.call("eth_getCode", a, tag))[2:]) for a in (incentive, model)]
    incentive_contract = _identify(codes[0], compiled, [n for n, a in abis.items()
                                                        if "handleAddData" in a._by_name and n != "DataHandler"])
    model_contract = _identify(codes[1], compiled, list(MODEL_CONTRACTS))
    if incentive_contract is None:
        raise DeploymentError(f"incentive mechanism at {incentive}: not one of the compiled mechanisms")
    if model_contract is None:
        raise DeploymentError(f"model at {model}: not one of the compiled models")
    m_abi = abis[model_contract]
    if model_contract == "SparsePerceptron":
        if n_features is None:
            raise DeploymentError("the model is a SparsePerceptron, which does not store its width: pass n_features")
        width = n_features
    else:
        getter = "vocabularySize" if model_contract == "NaiveBayes" else "nFeatures"
        width = int(m_abi.fn(getter).decode(await client.eth_call(model, m_abi.encode(getter), tag)))
    deployer = ""
    if "modelOwner" in abis[incentive_contract]._by_name:
        i_abi = abis[incentive_contract]
        deployer = to_checksum_address(i_abi.fn("modelOwner").decode(
            await client.eth_call(incentive, i_abi.encode("modelOwner"), tag)))
    system = DeployedSystem(trainer=trainer, data_handler=data_handler, incentive=incentive, model=model,
                            deployer=deployer, block=await client.block_number() if tag == "latest" else int(tag, 16),
                            n_features=width, gas_used=0, transactions=0, abis=abis, model_contract=model_contract,
                            incentive_contract=incentive_contract)
    await verify_system(client, system)
    return system
