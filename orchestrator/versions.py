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

from contracts.deploy import SparsePerceptronSpec
from contracts.twins import SparsePerceptronTwin

from .datasets import load_dataset, split
from .scenario import Scenario

INITIAL_MODEL = "model_initial.json"


class VersionError(ValueError):
    pass


def save_initial_model(run_dir: Path, spec: Any) -> None:
    from .results import write_json

    write_json(run_dir / INITIAL_MODEL, {"contract": spec.contract, "spec": asdict(spec)})


def load_initial_model(run_dir: Path) -> SparsePerceptronSpec:
    path = run_dir / INITIAL_MODEL
    if not path.exists():
        raise VersionError(f"{path}: missing (runs before this feature did not save their initial model)")
    data = json.loads(path.read_text())
    if data.get("contract") != "SparsePerceptron":
        raise VersionError(f"{path}: model contract {data.get('contract')!r} cannot be replayed yet")
    spec = data["spec"]
    return SparsePerceptronSpec(weights=[int(w) for w in spec["weights"]], intercept=int(spec["intercept"]),
                                learning_rate=int(spec["learning_rate"]),
                                classifications=tuple(spec["classifications"]))  # type: ignore[arg-type]


def test_set(scenario: Scenario) -> tuple[list[tuple[int, ...]], np.ndarray]:
    ds = load_dataset(scenario.dataset, scenario.seed)
    parts = split(ds, scenario.dataset, scenario.seed)
    rows = parts.test if scenario.evaluation.test_size is None else parts.test[: scenario.evaluation.test_size]
    return [ds.samples[i] for i in rows], ds.labels[rows]


def replay(run_dir: Path, block: int) -> tuple[SparsePerceptronTwin, int]:
    """The model after every contribution mined at or before `block`. Returns (twin, contributions)."""
    import pyarrow.parquet as pq

    spec = load_initial_model(run_dir)
    twin = SparsePerceptronTwin(np.array(spec.weights, dtype=np.int64), spec.intercept, spec.learning_rate)
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
    return {"block": block, "contributions_applied": applied, "accuracy": float(correct.mean()),
            "accuracy_class0": float(correct[labels == 0].mean()) if (labels == 0).any() else None,
            "accuracy_class1": float(correct[labels == 1].mean()) if (labels == 1).any() else None,
            "n_test": len(labels)}


def export_at(run_dir: Path, block: int, out: Path) -> None:
    """Write the model at `block` as a model file (the reference's JSON shape, fixed point scaled
    back to real numbers)."""
    twin, _ = replay(run_dir, block)
    spec = load_initial_model(run_dir)
    scale = 1e9
    data = {"type": "sparse perceptron", "classifications": list(spec.classifications),
            "weights": [int(w) / scale for w in twin.weights], "intercept": twin.intercept / scale,
            "learningRate": twin.learning_rate / scale, "block": block}
    out.write_text(json.dumps(data) + "\n")
