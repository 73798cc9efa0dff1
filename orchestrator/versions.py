"""The model as it was at any block ("versioning through blocks").

Two sources: a live node (the model's state read at that block and evaluated with the exact twin), or
a finished run's results folder (the initial model replayed with every contribution mined up to that
block, in chain order, through the same twin: the contracts' own integer arithmetic, so the result
is the state the chain held). Either way the accuracy is measured on the run's held-out test set.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from contracts.model_files import model_to_dict
from contracts.models import (
    MODEL_CONTRACTS,
    DenseNearestCentroidSpec,
    DensePerceptronSpec,
    NaiveBayesSpec,
    SparseNearestCentroidSpec,
    SparsePerceptronSpec,
)
from contracts.twins import (
    DenseNearestCentroidTwin,
    DensePerceptronTwin,
    NaiveBayesTwin,
    SparseNearestCentroidTwin,
    SparsePerceptronTwin,
    Twin,
    twin_from_spec,
)

from .datasets import for_model, load_dataset, split
from .scenario import Scenario

INITIAL_MODEL = "model_initial.json"


class VersionError(ValueError):
    pass


def save_initial_model(run_dir: Path, spec: Any) -> None:
    from .results import write_json

    write_json(run_dir / INITIAL_MODEL, {"contract": spec.contract, "spec": asdict(spec)})


def _int_keys(per_class: list[dict[str, int]]) -> list[dict[int, int]]:
    # JSON object keys are text; the specs index features by integer.
    return [{int(f): int(n) for f, n in c.items()} for c in per_class]


def load_initial_model(run_dir: Path) -> Any:
    """The spec saved by `save_initial_model` (fixed-point integers, exact), for any model contract."""
    path = run_dir / INITIAL_MODEL
    if not path.exists():
        raise VersionError(f"{path}: missing (runs before this feature did not save their initial model)")
    data = json.loads(path.read_text())
    contract = data.get("contract")
    if contract not in MODEL_CONTRACTS:
        raise VersionError(f"{path}: unknown model contract {contract!r}; known: {sorted(MODEL_CONTRACTS)}")
    spec = data["spec"]
    names = tuple(spec["classifications"])
    if contract == "SparsePerceptron":
        return SparsePerceptronSpec(weights=[int(w) for w in spec["weights"]], intercept=int(spec["intercept"]),
                                    learning_rate=int(spec["learning_rate"]),
                                    classifications=names)  # type: ignore[arg-type]
    if contract == "DensePerceptron":
        return DensePerceptronSpec(weights=[int(w) for w in spec["weights"]], intercept=int(spec["intercept"]),
                                   learning_rate=int(spec["learning_rate"]),
                                   classifications=names)  # type: ignore[arg-type]
    if contract == "NaiveBayes":
        return NaiveBayesSpec(class_counts=[int(n) for n in spec["class_counts"]],
                              feature_counts=_int_keys(spec["feature_counts"]),
                              vocabulary_size=int(spec["vocabulary_size"]), smoothing=int(spec["smoothing"]),
                              classifications=names)
    if contract == "DenseNearestCentroid":
        return DenseNearestCentroidSpec(centroids=[[int(v) for v in c] for c in spec["centroids"]],
                                        data_counts=[int(n) for n in spec["data_counts"]], classifications=names)
    return SparseNearestCentroidSpec(sums=_int_keys(spec["sums"]), data_counts=[int(n) for n in spec["data_counts"]],
                                     vocabulary_size=int(spec["vocabulary_size"]), classifications=names)


def spec_of_twin(twin: Twin, initial: Any) -> Any:
    """The model a twin holds, as a spec of the same contract (class names from the initial spec)."""
    names = initial.classifications
    if isinstance(twin, SparsePerceptronTwin):
        return SparsePerceptronSpec([int(w) for w in twin.weights], twin.intercept, twin.learning_rate, names)
    if isinstance(twin, DensePerceptronTwin):
        return DensePerceptronSpec(list(twin.weights), twin.intercept, twin.learning_rate, names)
    if isinstance(twin, NaiveBayesTwin):
        counts = [{int(f): int(row[f]) for f in np.flatnonzero(row)} for row in twin.counts]
        return NaiveBayesSpec(list(twin.num_samples), counts, twin.vocabulary_size, twin.smoothing, names)
    if isinstance(twin, DenseNearestCentroidTwin):
        return DenseNearestCentroidSpec([list(c) for c in twin.centroids], list(twin.data_counts), names)
    if isinstance(twin, SparseNearestCentroidTwin):
        sums = [{int(j): int(row[j]) for j in np.flatnonzero(row)} for row in twin.sums]
        return SparseNearestCentroidSpec(sums, list(twin.num_samples), twin.vocabulary_size, names)
    raise VersionError(f"no spec for a {type(twin).__name__}")


def test_set(scenario: Scenario) -> tuple[list[tuple[int, ...]], np.ndarray]:
    ds = for_model(load_dataset(scenario.dataset, scenario.seed), scenario.model.type)
    parts = split(ds, scenario.dataset, scenario.seed)
    rows = parts.test if scenario.evaluation.test_size is None else parts.test[: scenario.evaluation.test_size]
    return [ds.samples[i] for i in rows], ds.labels[rows]


def replay(run_dir: Path, block: int) -> tuple[Twin, int]:
    """The model after every contribution mined at or before `block`. Returns (twin, contributions)."""
    import pyarrow.parquet as pq

    twin = twin_from_spec(load_initial_model(run_dir))
    path = run_dir / "contributions.parquet"
    if not path.exists():
        raise VersionError(f"{path}: missing")
    table = pq.read_table(path).to_pydict()
    order = sorted(range(len(table["block"])), key=lambda i: (table["block"][i], table["log_index"][i]))
    applied = 0
    for i in order:
        if table["block"][i] > block:
            break
        twin.update(table["data"][i], int(table["label"][i]))
        applied += 1
    return twin, applied


def evaluate_at(run_dir: Path, block: int) -> dict[str, Any]:
    scenario = Scenario.model_validate(json.loads((run_dir / "scenario.json").read_text()))
    twin, applied = replay(run_dir, block)
    samples, labels = test_set(scenario)
    pred = twin.predict(samples)
    correct = pred == labels
    # Classes 0 and 1 as before; a multi-class run also gets every class's accuracy.
    per_class = {str(c): float(correct[labels == c].mean()) for c in sorted(set(labels.tolist()))}
    return {"block": block, "contributions_applied": applied, "accuracy": float(correct.mean()),
            "accuracy_per_class": per_class,
            "accuracy_class0": float(correct[labels == 0].mean()) if (labels == 0).any() else None,
            "accuracy_class1": float(correct[labels == 1].mean()) if (labels == 1).any() else None,
            "n_test": len(labels)}


def export_at(run_dir: Path, block: int, out: Path) -> None:
    """Write the model at `block` as a model file (the reference's JSON shape, fixed point scaled
    back to real numbers)."""
    twin, _ = replay(run_dir, block)
    data = model_to_dict(spec_of_twin(twin, load_initial_model(run_dir)))
    data["block"] = block
    out.write_text(json.dumps(data) + "\n")
