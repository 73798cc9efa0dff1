"""Datasets that need no download, and the user's own files, with precise errors."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.datasets import DatasetError, load_dataset, split
from orchestrator.scenario import DatasetConfig


def test_tictactoe_is_the_endgame_set():
    ds = load_dataset(DatasetConfig(name="tictactoe"), 0)
    assert len(ds) == 958 and ds.n_features == 27  # every reachable finished board
    assert int(ds.labels.sum()) == 626  # x wins in 626 of them
    assert all(len(s) == 9 for s in ds.samples)  # one state per square
    assert len(set(ds.samples)) == 958


def test_digits_binary_and_one_against_rest():
    ds = load_dataset(DatasetConfig(name="digits"), 0)
    assert len(ds) == 1797 and ds.n_features == 64 and 0.4 < ds.labels.mean() < 0.6
    sevens = load_dataset(DatasetConfig(name="digits", positive="7"), 0)
    assert int(sevens.labels.sum()) == 179


def test_csv_file(tmp_path):
    f = tmp_path / "reviews.csv"
    f.write_text("len,exclaims,stars,verdict\n10,0,5,good\n200,1,1,bad\n15,0,4,good\n180,1,2,bad\n")
    ds = load_dataset(DatasetConfig(name="csv", path=str(f), label_column="verdict", positive="good"), 0)
    assert ds.n_features == 3 and ds.labels.tolist() == [1, 0, 1, 0]
    # 0/1 columns are present when 1; others when above their median
    assert ds.samples[1] == (0, 1) and ds.samples[0] == (2,)


@pytest.mark.parametrize("content,kw,message", [
    ("a,b,y\n1,2,x\n3,4,z\n5,6,w\n", {}, "takes 3 values"),
    ("a,b,y\n1,2,x\n3,oops,z\n", {}, ":3: column 'b': 'oops' is not a number"),
    ("a,b,y\n1,2,x\n3,4\n", {}, ":3: 2 fields, the header has 3"),
    ("a,b,y\n1,2,x\n3,4,z\n", {"label_column": "label"}, "no column named 'label'"),
    ("a,b,y\n1,2,x\n3,4,z\n", {"label_column": 7}, "label_column 7 is outside the 3 columns"),
    ("a,b,y\n1,2,x\n3,4,z\n", {"positive": "q"}, "positive label 'q' is not one of the labels"),
])
def test_csv_errors_name_file_line_and_column(tmp_path, content, kw, message):
    f = tmp_path / "bad.csv"
    f.write_text(content)
    with pytest.raises(DatasetError) as e:
        load_dataset(DatasetConfig(name="csv", path=str(f), **kw), 0)
    assert str(f) in str(e.value) and message in str(e.value)


def test_missing_file_and_missing_path(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(DatasetConfig(name="libsvm", path=str(tmp_path / "nope.svm")), 0)
    with pytest.raises(ValueError, match="needs 'path'"):
        DatasetConfig(name="csv")


def test_libsvm_file(tmp_path):
    f = tmp_path / "small.svm"
    f.write_text("1 3:1 7:1\n-1 1:1\n1 3:1 5:0.5\n-1 2:1 7:1\n")
    ds = load_dataset(DatasetConfig(name="libsvm", path=str(f)), 0)
    assert ds.labels.tolist() == [1, 0, 1, 0]
    assert ds.samples[0] == (2, 6)  # libsvm indices are 1-based
    bad = tmp_path / "bad.svm"
    bad.write_text("1 3:x\n")
    with pytest.raises(DatasetError, match="not a valid libsvm file"):
        load_dataset(DatasetConfig(name="libsvm", path=str(bad)), 0)


def test_splits_are_deterministic_from_the_seed():
    cfg = DatasetConfig(name="tictactoe")
    ds = load_dataset(cfg, 0)
    a, b, c = split(ds, cfg, 5), split(ds, cfg, 5), split(ds, cfg, 6)
    assert np.array_equal(a.test, b.test) and np.array_equal(a.agents, b.agents)
    assert not np.array_equal(a.test, c.test)
    assert len(set(a.test) | set(a.init) | set(a.agents)) == len(ds)
