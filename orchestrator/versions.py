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

from contracts.families import UnknownModelFamily, by_contract, get
from contracts.model_files import model_to_dict
from contracts.twins import Twin, twin_from_spec

from .datasets import for_model, load_dataset, split
from .scenario import Scenario

INITIAL_MODEL = "model_initial.json"


class VersionError(ValueError):
    pass


def save_initial_model(run_dir: Path, spec: Any, family: str | None = None) -> None:
    """Write the initial model (exact fixed-point integers). `family` names it when several families
    share a contract; by default the contract's first family."""
    from .results import write_json

    name = family or by_contract(spec.contract).name
    write_json(run_dir / INITIAL_MODEL, {"contract": spec.contract, "family": name, "spec": asdict(spec)})


def _family_of(path: Path, data: dict[str, Any]) -> Any:
    try:
        # Runs before families were named saved only the contract.
        return get(data["family"]) if "family" in data else by_contract(str(data.get("contract")))
    except UnknownModelFamily as e:
        raise VersionError(f"{path}: {e}") from None


def load_initial_model(run_dir: Path) -> Any:
    """The spec saved by `save_initial_model` (fixed-point integers, exact), for any model family."""
    path = run_dir / INITIAL_MODEL
    if not path.exists():
        raise VersionError(f"{path}: missing (runs before this feature did not save their initial model)")
    data = json.loads(path.read_text())
    return _family_of(path, data).spec_from_json(data["spec"])


def spec_of_twin(twin: Twin, initial: Any) -> Any:
    """The model a twin holds, as a spec of the same contract (class names from the initial spec)."""
    family = next((f for f in _families_of(initial) if isinstance(twin, f.twin_type)), None)
    if family is None:
        raise VersionError(f"no spec for a {type(twin).__name__}")
    return family.spec_of_twin(twin, initial.classifications)


def _families_of(spec: Any) -> list[Any]:
    from contracts.families import families

    return [f for f in families() if f.contract == spec.contract]


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
