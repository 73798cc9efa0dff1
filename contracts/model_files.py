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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from eth_utils import to_checksum_address

from .compiler import CompileResult
from .deploy import DeployedSystem, DeploymentError, abis_of, verify_system
from .families import by_contract, by_file_type, families
from .families.common import DEFAULT_LEARNING_RATE, DEFAULT_SMOOTHING, FileReader, ModelFileError, ModelSpecError
from .families.sparse_perceptron import MAX_DENSE_SPARSE_WEIGHTS
from .rpc import RpcClient, RpcError

# Any family's spec (each family module defines its own; plugins add theirs).
ModelSpecT = Any

__all__ = [
    "DEFAULT_LEARNING_RATE",
    "DEFAULT_SMOOTHING",
    "MAX_DENSE_SPARSE_WEIGHTS",
    "ModelFileError",
    "export_sklearn",
    "load_model",
    "load_system",
    "model_from_dict",
    "model_to_dict",
    "naive_bayes_dict",
    "nearest_centroid_dict",
    "perceptron_dict",
    "save_model",
]


def model_from_dict(data: Any, source: str = "<model>") -> ModelSpecT:
    """A model spec from a parsed model file: its "type" names the family that reads the rest."""
    r = FileReader(data, source)
    kind = r.get("type", kind=str)
    family = by_file_type(kind)
    if family is None:
        known = sorted({t for f in families() for t in f.file_types})
        r.fail("type", f"unknown model type {kind!r}; known: {', '.join(known)}")
    assert family is not None
    try:
        return family.read_file(r)
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


def model_to_dict(spec: ModelSpecT) -> dict[str, Any]:
    """The reference's JSON form of a model spec (fixed point back to real numbers)."""
    try:
        family = by_contract(spec.contract)
    except (AttributeError, ValueError):
        raise ModelFileError(f"cannot save a {type(spec).__name__}") from None
    return family.write_file(spec)


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
    model_contract = _identify(codes[1], compiled, [f.contract for f in families()])
    if incentive_contract is None:
        raise DeploymentError(f"incentive mechanism at {incentive}: not one of the compiled mechanisms")
    if model_contract is None:
        raise DeploymentError(f"model at {model}: not one of the compiled models")
    m_abi = abis[model_contract]
    width = await by_contract(model_contract).width(client, model, m_abi, tag)
    if width is None:
        if n_features is None:
            raise DeploymentError(f"the model is a {model_contract}, which does not store its width: pass n_features")
        width = n_features
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
