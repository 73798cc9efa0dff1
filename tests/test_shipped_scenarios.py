"""Every shipped scenario loads, and none hides its dataset's label noise in a default: a file whose
dataset comes from a generator that flips labels (`synthetic_sparse`) says how many it flips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.scenario import load_scenario
from orchestrator.sweep import load_sweep

SCENARIOS = sorted((Path(__file__).resolve().parents[1] / "scenarios").glob("*.yaml"))
NOISY_GENERATORS = {"synthetic_sparse"}


def _is_sweep(raw: dict[str, Any]) -> bool:
    return any(k in raw for k in ("base", "grid", "cases", "overrides"))


def _datasets(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """The dataset mappings a file writes itself: a scenario's, or a sweep's override of the base's."""
    found = [raw["dataset"]] if isinstance(raw.get("dataset"), dict) else []
    over = raw.get("overrides") or {}
    if isinstance(over.get("dataset"), dict):
        found.append(over["dataset"])
    return found


def test_there_are_shipped_scenarios():
    names = {p.name for p in SCENARIOS}
    assert {"quickstart.yaml", "label_flip.yaml", "paper_imdb_1v1.yaml", "demo.yaml"} <= names


def _is_attack_search(raw: dict[str, Any]) -> bool:
    # `dcai attack-search` files name a sweep file (checked as a sweep here) and search its fields.
    return "search" in raw and "sweep" in raw


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.name for p in SCENARIOS])
def test_shipped_scenario_loads_and_states_its_noise(path: Path):
    raw = yaml.safe_load(path.read_text())
    if _is_attack_search(raw):
        assert (path.parent / str(raw["sweep"])).is_file(), f"{path.name}: sweep {raw['sweep']} missing"
    elif _is_sweep(raw):
        assert load_sweep(path).cells
    else:
        load_scenario(path)
        # A scenario that writes no dataset at all would get the generator's and its default noise.
        assert isinstance(raw.get("dataset"), dict), f"{path.name}: no dataset section"
    for ds in _datasets(raw):
        if ds.get("name", "synthetic_sparse") in NOISY_GENERATORS:
            assert "noise" in ds, f"{path.name}: dataset {ds.get('name')} flips labels by default; write its noise"


def test_quickstart_has_no_label_noise():
    sc = load_scenario(next(p for p in SCENARIOS if p.name == "quickstart.yaml"))
    assert sc.dataset.noise == 0
