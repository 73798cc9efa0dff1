"""Datasets that need no download, encoded as the models take them, split deterministically.

A dataset holds each sample twice: as the sorted tuple of indices of its present features (what the
sparse models take) and as a row of real features scaled per column (`dense`: to [0, 1]; a libsvm
file's columns by their largest magnitude, which keeps them sparse). `for_model` gives the
samples a model type takes: sparse models the indices; dense models the real row with a constant 1
appended (a bias the perceptron can learn, since the contract never trains its intercept; it also
keeps every row non-zero), scaled to unit L2 norm in the contracts' fixed point (`contracts.encoders`).
* `synthetic_sparse`: a bag-of-words stand-in for review sentiment. Word frequencies follow a Zipf
  law; a fifth of the vocabulary carries a polarity that tilts its frequency by class.
* `breast_cancer`: scikit-learn's bundled set; each feature is present when above its median.
* `digits`: scikit-learn's bundled 8x8 digits; a pixel is present when at least half lit; the label
  is 1 for `positive` digits (default 5-9).
* `tictactoe`: every reachable finished tic-tac-toe board, generated here; 27 features (each square
  is x, o or blank); the label is 1 when x has won.
* `csv` / `libsvm`: the user's file. CSV: a header row, numeric feature columns (present when above
  the column's median, or non-zero for 0/1 columns) and a label column; libsvm via scikit-learn.
Labels are two classes (0 and 1) unless `multiclass` is set: then digits keeps its ten digits and a
file keeps one class per distinct label value (in sorted order), for the multi-class models.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .scenario import DatasetConfig


class DatasetError(ValueError):
    pass


@dataclass(frozen=True)
class Dataset:
    name: str
    samples: list[tuple[int, ...]]  # the model's input: present-feature indices, or (for_model) dense values
    labels: np.ndarray  # int64 class indices 0..n_classes-1
    n_features: int  # the model's input dimension / vocabulary
    class_names: tuple[str, ...] = ("0", "1")
    # (samples, features) reals scaled per column (an array, or for libsvm files a scipy sparse
    # matrix, densified only for a dense model so that a sparse run never pays for it)
    dense: Any = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class Split:
    init: np.ndarray  # indices into the dataset: trains the initial model off-chain
    agents: np.ndarray  # handed out to agents
    test: np.ndarray  # held out: measures the on-chain model


def synthetic_sparse(n: int, vocab: int, avg_length: int, noise: float, seed: int) -> Dataset:
    rng = np.random.default_rng([seed, 0x5EED])
    base = 1.0 / (np.arange(vocab) + 10.0)
    polarity = np.zeros(vocab)
    charged = rng.choice(vocab, size=max(2, vocab // 5), replace=False)
    polarity[charged] = rng.choice([-1.0, 1.0], size=charged.size) * rng.uniform(0.5, 2.0, size=charged.size)
    probs = []
    for c in (0, 1):
        w = base * np.exp(polarity * (1 if c == 1 else -1))
        probs.append(w / w.sum())
    labels = rng.integers(0, 2, size=n)
    lengths = np.clip(1 + rng.poisson(max(avg_length - 1, 0), size=n), 1, max(1, vocab // 2))
    samples = []
    for y, length in zip(labels, lengths):
        idx = rng.choice(vocab, size=int(length), replace=False, p=probs[int(y)])
        samples.append(tuple(sorted(int(i) for i in idx)))
    flips = rng.random(n) < noise
    labels = np.where(flips, 1 - labels, labels).astype(np.int64)
    return Dataset("synthetic_sparse", samples, labels, vocab, dense=_presence_matrix(samples, vocab))


def breast_cancer() -> Dataset:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    x = bunch.data
    present = x > np.median(x, axis=0)
    samples = [tuple(int(j) for j in np.flatnonzero(row)) for row in present]
    return Dataset("breast_cancer", samples, bunch.target.astype(np.int64), x.shape[1], dense=_min_max(x))


def _presence_matrix(samples: list[tuple[int, ...]], n_features: int) -> np.ndarray:
    out = np.zeros((len(samples), n_features))
    for r, s in enumerate(samples):
        out[r, list(s)] = 1.0
    return out


def _min_max(x: np.ndarray) -> np.ndarray:
    """Each column to [0, 1] over the whole set: real features of very different scales (areas in the
    thousands next to ratios below 1) would otherwise leave unit-norm rows with one live component."""
    lo, hi = x.min(axis=0), x.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return (x - lo) / span


def _present(x: np.ndarray) -> list[tuple[int, ...]]:
    """Dense features to present-feature indices: 0/1 columns as they are, others above the median."""
    binary = np.all(np.isin(x, (0, 1)), axis=0)
    cut = np.where(binary, 0.5, np.median(x, axis=0))
    present = x > cut
    return [tuple(int(j) for j in np.flatnonzero(row)) for row in present]


def _sorted_values(values: set[str]) -> list[str]:
    # Numeric labels in numeric order ("2" before "10"), others as text.
    try:
        return sorted(values, key=float)
    except ValueError:
        return sorted(values)


def _binary_labels(raw: np.ndarray, positive: str | None, source: str) -> np.ndarray:
    values = sorted({str(v) for v in raw.tolist()})
    if len(values) < 2:
        raise DatasetError(f"{source}: the label takes one value ({', '.join(values)}): a classifier needs 2 "
                           "classes")
    if len(values) != 2 and positive is None:
        shown = ", ".join(values[:8]) + (" ..." if len(values) > 8 else "")
        raise DatasetError(f"{source}: the label takes {len(values)} values ({shown}); without dataset.multiclass "
                           "the models take 2 classes: give 'positive' to pick the value that counts as 1, or set "
                           "multiclass: true with a multi-class model (naive_bayes, dense_nearest_centroid, "
                           "sparse_nearest_centroid)")
    pos = positive if positive is not None else values[1]
    if pos not in values:
        raise DatasetError(f"{source}: positive label {pos!r} is not one of the labels {values}")
    return np.array([1 if str(v) == pos else 0 for v in raw.tolist()], dtype=np.int64)


def _class_labels(raw: np.ndarray, source: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """One class per distinct label value, in sorted order."""
    values = _sorted_values({str(v) for v in raw.tolist()})
    if len(values) < 2:
        raise DatasetError(f"{source}: the label takes {len(values)} value(s); a classifier needs at least 2")
    index = {v: i for i, v in enumerate(values)}
    return np.array([index[str(v)] for v in raw.tolist()], dtype=np.int64), tuple(values)


def _labels(raw: np.ndarray, positive: str | None, multiclass: bool, source: str
            ) -> tuple[np.ndarray, tuple[str, ...]]:
    if multiclass:
        return _class_labels(raw, source)
    return _binary_labels(raw, positive, source), ("0", "1")


def digits(positive: str | None, multiclass: bool = False) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    lit = bunch.data >= 8  # pixels run 0-16
    samples = [tuple(int(j) for j in np.flatnonzero(row)) for row in lit]
    names: tuple[str, ...] = ("0", "1")
    if multiclass:
        labels = bunch.target.astype(np.int64)
        names = tuple(str(d) for d in range(10))
    elif positive is None:
        labels = (bunch.target >= 5).astype(np.int64)
    else:
        labels = (bunch.target == int(positive)).astype(np.int64)
    return Dataset("digits", samples, labels, bunch.data.shape[1], names, dense=bunch.data / 16.0)


def _winner(board: tuple[int, ...]) -> int:
    lines = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))
    for a, b, c in lines:
        if board[a] and board[a] == board[b] == board[c]:
            return board[a]
    return 0


def tictactoe() -> Dataset:
    """Every finished board reachable in play (x moves first): someone won, or the board is full."""
    finished: set[tuple[int, ...]] = set()
    frontier = {tuple([0] * 9)}
    while frontier:
        nxt: set[tuple[int, ...]] = set()
        for board in frontier:
            player = 1 if board.count(1) == board.count(2) else 2
            for i in range(9):
                if board[i]:
                    continue
                child = board[:i] + (player,) + board[i + 1:]
                if _winner(child) or 0 not in child:
                    finished.add(child)
                else:
                    nxt.add(child)
        frontier = nxt
    boards = sorted(finished)
    # Features: square i is x (3i), o (3i + 1) or blank (3i + 2).
    samples = [tuple(3 * i + (0 if v == 1 else 1 if v == 2 else 2) for i, v in enumerate(b)) for b in boards]
    labels = np.array([1 if _winner(b) == 1 else 0 for b in boards], dtype=np.int64)
    return Dataset("tictactoe", samples, labels, 27, dense=_presence_matrix(samples, 27))


def from_csv(path: str, label_column: int | str, positive: str | None, multiclass: bool = False) -> Dataset:
    import csv
    import math

    p = _existing(path)
    try:
        with open(p, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            # (line number, fields); blank lines are skipped, so numbers are the file's own
            rows = [(reader.line_num, row) for row in reader if row]
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 text (bad byte at offset {e.start})") from None
    except csv.Error as e:
        raise DatasetError(f"{path}: not a valid csv file: {e}") from None
    if not rows:
        raise DatasetError(f"{path}: empty file: expected a header row and at least two data rows")
    if len(rows) < 3:
        raise DatasetError(f"{path}: {len(rows) - 1} data row(s): a header row and at least two data rows are needed")
    (_, header), body = rows[0], rows[1:]
    if isinstance(label_column, str):
        if label_column not in header:
            raise DatasetError(f"{path}:1: no column named {label_column!r} (label_column); columns: {header}")
        col = header.index(label_column)
    else:
        col = label_column if label_column >= 0 else len(header) + label_column
        if not 0 <= col < len(header):
            raise DatasetError(f"{path}: label_column {label_column} is outside the {len(header)} columns")
    features = [i for i in range(len(header)) if i != col]
    if not features:
        raise DatasetError(f"{path}:1: only the label column {header[col]!r}: at least one feature column is needed")
    x = np.zeros((len(body), len(features)))
    for r, (line, row) in enumerate(body):
        if len(row) != len(header):
            raise DatasetError(f"{path}:{line}: {len(row)} fields, the header has {len(header)}")
        for k, i in enumerate(features):
            try:
                v = float(row[i])
            except ValueError:
                raise DatasetError(f"{path}:{line}: column {header[i]!r}: {row[i]!r} is not a number") from None
            if not math.isfinite(v):  # float() takes 'nan' and 'inf'; the median cut cannot
                raise DatasetError(f"{path}:{line}: column {header[i]!r}: {row[i]!r} is not a finite number")
            x[r, k] = v
    labels, names = _labels(np.array([row[col] for _, row in body]), positive, multiclass, path)
    return Dataset(Path(path).stem, _present(x), labels, len(features), names, dense=_min_max(x))


def _check_libsvm(p: Path, path: str) -> None:
    """Validate a libsvm file line by line, so an error names its line (scikit-learn's parser does
    not): `label [qid:n] index:value ...`, indices integers from 1, strictly increasing along a line,
    values finite numbers, `#` starts a comment."""
    import math

    seen = 0
    with open(p, errors="replace") as fh:
        for line_no, line in enumerate(fh, start=1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            seen += 1
            where = f"{path}:{line_no}: not a valid libsvm file"
            label, *pairs = text.split()
            if ":" in label:
                raise DatasetError(f"{where}: missing label: the line starts with {label!r}, expected "
                                   "'label index:value ...'")
            try:
                if not math.isfinite(float(label)):
                    raise ValueError
            except ValueError:
                raise DatasetError(f"{where}: label {label!r} is not a finite number") from None
            prev = 0
            for k, pair in enumerate(pairs):
                idx_text, sep, val_text = pair.partition(":")
                if not sep:
                    raise DatasetError(f"{where}: {pair!r} is not index:value")
                if idx_text == "qid" and k == 0:
                    continue
                try:
                    idx = int(idx_text)
                except ValueError:
                    raise DatasetError(f"{where}: feature index {idx_text!r} is not an integer") from None
                if idx < 1:
                    raise DatasetError(f"{where}: feature index {idx}: libsvm indices start at 1")
                if idx <= prev:
                    raise DatasetError(f"{where}: feature index {idx} after {prev}: indices must increase "
                                       "along a line")
                prev = idx
                try:
                    if not math.isfinite(float(val_text)):
                        raise ValueError
                except ValueError:
                    raise DatasetError(f"{where}: feature {idx}: value {val_text!r} is not a finite number") from None
    if not seen:
        raise DatasetError(f"{path}: empty file: expected lines 'label index:value ...'")


def from_libsvm(path: str, positive: str | None, multiclass: bool = False) -> Dataset:
    p = _existing(path)
    _check_libsvm(p, path)  # before importing scikit-learn (seconds): a malformed file is refused at once
    from sklearn.datasets import load_svmlight_file

    try:
        x, y = load_svmlight_file(str(p), zero_based=False)
    except ValueError as e:
        raise DatasetError(f"{path}: not a valid libsvm file: {e}") from None
    samples = [tuple(int(j) for j in x[i].indices[x[i].data != 0]) for i in range(x.shape[0])]
    labels, names = _labels(np.array([f"{v:g}" for v in y]), positive, multiclass, path)
    # Each column divided by its largest magnitude: keeps the matrix sparse (a min-max shift would not).
    peak = np.asarray(abs(x).max(axis=0).todense()).ravel()
    scaled = x.multiply(1.0 / np.where(peak > 0, peak, 1.0)).tocsr()
    return Dataset(Path(path).stem, samples, labels, x.shape[1], names, dense=scaled)


def _existing(path: str) -> Path:
    """The dataset file, refused with one precise message when it cannot be a readable text file."""
    import os

    p = Path(path)
    if not p.exists():
        raise DatasetError(f"dataset file {path!r} not found (looked in {p.resolve().parent})")
    if p.is_dir():
        raise DatasetError(f"{path}: is a directory; dataset.path names a csv or libsvm file")
    if not p.is_file():
        raise DatasetError(f"{path}: not a regular file")
    if not os.access(p, os.R_OK):
        raise DatasetError(f"{path}: cannot read the file: permission denied")
    with open(p, "rb") as fh:
        head = fh.read(8192)
    if b"\0" in head:
        raise DatasetError(f"{path}: a binary file, not csv or libsvm text")
    return p


def load_dataset(cfg: DatasetConfig, seed: int) -> Dataset:
    if cfg.name == "synthetic_sparse":
        return synthetic_sparse(cfg.samples, cfg.features, cfg.avg_length, cfg.noise, seed)
    if cfg.name == "breast_cancer":
        return breast_cancer()
    if cfg.name == "digits":
        return digits(cfg.positive, cfg.multiclass)
    if cfg.name == "tictactoe":
        return tictactoe()
    if cfg.name == "csv":
        assert cfg.path is not None
        return from_csv(cfg.path, cfg.label_column, cfg.positive, cfg.multiclass)
    if cfg.name == "libsvm":
        assert cfg.path is not None
        return from_libsvm(cfg.path, cfg.positive, cfg.multiclass)
    raise DatasetError(f"dataset.name: unknown dataset {cfg.name!r}")


def for_model(ds: Dataset, model_type: str) -> Dataset:
    """The dataset as `model_type` (a `ModelConfig.type`) takes it. Raises DatasetError, naming the
    dataset, when the model cannot take its labels."""
    from contracts.families import get

    family = get(model_type)  # what the model takes comes from its family (plugins included)
    if family.binary_only and ds.n_classes > 2:
        raise DatasetError(f"dataset {ds.name}: {ds.n_classes} classes, but model type {model_type!r} takes two; "
                           "use naive_bayes, dense_nearest_centroid or sparse_nearest_centroid")
    if not family.dense:
        return ds
    if ds.dense is None:
        raise DatasetError(f"dataset {ds.name}: no real-valued features for a dense model")
    from contracts.encoders import unit_norm

    values = ds.dense.toarray() if hasattr(ds.dense, "toarray") else np.asarray(ds.dense)
    with_bias = np.hstack([values, np.ones((len(ds), 1))])
    samples = [tuple(unit_norm(row.tolist())) for row in with_bias]
    return replace(ds, samples=samples, n_features=with_bias.shape[1])


def split(ds: Dataset, cfg: DatasetConfig, seed: int) -> Split:
    n = len(ds)
    order = np.random.default_rng([seed, 0x5B117]).permutation(n)
    n_test = max(1, int(round(n * cfg.test_fraction)))
    n_init = max(1, int(round(n * cfg.init_train_fraction)))
    if n_test + n_init >= n:
        raise DatasetError(f"dataset {ds.name} has {n} samples: too few for the requested split")
    if len(set(ds.labels[order[n_test:n_test + n_init]].tolist())) < 2:
        raise DatasetError(f"dataset {ds.name}: the initial-training part holds one class only; "
                           "raise dataset.init_train_fraction")
    return Split(init=order[n_test:n_test + n_init], agents=order[n_test + n_init:], test=order[:n_test])


def to_csr(samples: list[tuple[int, ...]], n_features: int):  # type: ignore[no-untyped-def]
    from scipy.sparse import csr_matrix

    indptr = np.zeros(len(samples) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(s) for s in samples])
    indices = np.fromiter((i for s in samples for i in s), dtype=np.int64, count=int(indptr[-1]))
    data = np.ones(indices.size, dtype=np.float64)
    return csr_matrix((data, indices, indptr), shape=(len(samples), n_features))
