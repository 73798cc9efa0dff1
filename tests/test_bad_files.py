"""Corpora of malformed dataset files (tests/datasets_bad/) and model files (tests/models_bad/).

Like tests/scenarios_bad/ for scenarios: each fixture is a real file, and the sidecar
`expectations.json` of its folder says where the error must point (dataset: the line, or null for
the file as a whole; model: the field) and a fragment of what it must say was expected. The error
must also name the file, so a user with many files knows which one to open.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from contracts.model_files import ModelFileError, load_model
from orchestrator.datasets import DatasetError, load_dataset
from orchestrator.scenario import DatasetConfig

HERE = Path(__file__).parent
DATASETS = HERE / "datasets_bad"
MODELS = HERE / "models_bad"


def _expectations(folder: Path) -> dict[str, dict[str, Any]]:
    data = json.loads((folder / "expectations.json").read_text())
    return {k: v for k, v in data.items() if not k.startswith("_")}


def _fixtures(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name != "expectations.json")


DATASET_FILES = _fixtures(DATASETS)
MODEL_FILES = _fixtures(MODELS)


@pytest.mark.parametrize("folder", [DATASETS, MODELS], ids=["datasets", "models"])
def test_every_fixture_has_an_expectation_and_back(folder: Path) -> None:
    assert {p.name for p in _fixtures(folder)} == set(_expectations(folder))


def test_the_corpora_cover_the_cases() -> None:
    assert len([p for p in DATASET_FILES if p.suffix == ".csv"]) >= 8
    assert len([p for p in DATASET_FILES if p.suffix == ".svm"]) >= 8
    assert len(MODEL_FILES) >= 20


@pytest.mark.parametrize("path", DATASET_FILES, ids=[p.name for p in DATASET_FILES])
def test_bad_dataset_is_reported_at_its_line(path: Path) -> None:
    expect = _expectations(DATASETS)[path.name]
    name = "csv" if path.suffix == ".csv" else "libsvm"
    with pytest.raises(DatasetError) as info:
        load_dataset(DatasetConfig(name=name, path=str(path), **expect.get("config", {})), 0)
    message = str(info.value)
    assert message.startswith(str(path)), message
    if expect["line"] is not None:
        assert message.startswith(f"{path}:{expect['line']}: "), message
    else:
        assert message.startswith(f"{path}: "), message  # about the whole file: no line number
    assert expect["says"] in message, message


@pytest.mark.parametrize("path", MODEL_FILES, ids=[p.name for p in MODEL_FILES])
def test_bad_model_file_is_reported_at_its_field(path: Path) -> None:
    expect = _expectations(MODELS)[path.name]
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    message = str(info.value)
    if expect["field"] is not None:
        assert message.startswith(f"{path}: {expect['field']}"), message
    else:
        assert message.startswith(f"{path}: "), message
    assert expect["says"] in message, message
