"""Datasets that need no download, encoded as the models take them, split deterministically.

For the sparse perceptron a sample is the sorted tuple of indices of its present features.
* `synthetic_sparse`: a bag-of-words stand-in for review sentiment. Word frequencies follow a Zipf
  law; a fifth of the vocabulary carries a polarity that tilts its frequency by class.
* `breast_cancer`: scikit-learn's bundled set; each feature is present when above its median.
* `digits`: scikit-learn's bundled 8x8 digits; a pixel is present when at least half lit; the label
  is 1 for `positive` digits (default 5-9).
* `tictactoe`: every reachable finished tic-tac-toe board, generated here; 27 features (each square
  is x, o or blank); the label is 1 when x has won.
* `csv` / `libsvm`: the user's file. CSV: a header row, numeric feature columns (present when above
  the column's median, or non-zero for 0/1 columns) and a label column; libsvm via scikit-learn.
Labels must take exactly two values: the binary models map them to 0 and 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .scenario import DatasetConfig


class DatasetError(ValueError):
    pass


@dataclass(frozen=True)
class Dataset:
    name: str
    samples: list[tuple[int, ...]]
    labels: np.ndarray  # int64, 0/1
    n_features: int

    def __len__(self) -> int:
        return len(self.samples)


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
    return Dataset("synthetic_sparse", samples, labels, vocab)


def breast_cancer() -> Dataset:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    x = bunch.data
    present = x > np.median(x, axis=0)
    samples = [tuple(int(j) for j in np.flatnonzero(row)) for row in present]
    return Dataset("breast_cancer", samples, bunch.target.astype(np.int64), x.shape[1])


def _present(x: np.ndarray) -> list[tuple[int, ...]]:
    """Dense features to present-feature indices: 0/1 columns as they are, others above the median."""
    binary = np.all(np.isin(x, (0, 1)), axis=0)
    cut = np.where(binary, 0.5, np.median(x, axis=0))
    present = x > cut
    return [tuple(int(j) for j in np.flatnonzero(row)) for row in present]


def _binary_labels(raw: np.ndarray, positive: str | None, source: str) -> np.ndarray:
    values = sorted({str(v) for v in raw.tolist()})
    if len(values) != 2:
        shown = ", ".join(values[:8]) + (" ..." if len(values) > 8 else "")
        raise DatasetError(f"{source}: the label takes {len(values)} values ({shown}); the models here take "
                           "2 classes: give 'positive' to pick the value that counts as 1")
    pos = positive if positive is not None else values[1]
    if pos not in values:
        raise DatasetError(f"{source}: positive label {pos!r} is not one of the labels {values}")
    return np.array([1 if str(v) == pos else 0 for v in raw.tolist()], dtype=np.int64)


def digits(positive: str | None) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    lit = bunch.data >= 8  # pixels run 0-16
    samples = [tuple(int(j) for j in np.flatnonzero(row)) for row in lit]
    if positive is None:
        labels = (bunch.target >= 5).astype(np.int64)
    else:
        labels = (bunch.target == int(positive)).astype(np.int64)
    return Dataset("digits", samples, labels, bunch.data.shape[1])


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
    return Dataset("tictactoe", samples, labels, 27)


def from_csv(path: str, label_column: int | str, positive: str | None) -> Dataset:
    import csv

    p = _existing(path)
    with open(p, newline="") as fh:
        rows = list(csv.reader(fh))
    if len(rows) < 3:
        raise DatasetError(f"{path}: a header row and at least two data rows are needed")
    header, body = rows[0], rows[1:]
    if isinstance(label_column, str):
        if label_column not in header:
            raise DatasetError(f"{path}: no column named {label_column!r}; columns: {header}")
        col = header.index(label_column)
    else:
        col = label_column if label_column >= 0 else len(header) + label_column
        if not 0 <= col < len(header):
            raise DatasetError(f"{path}: label_column {label_column} is outside the {len(header)} columns")
    features = [i for i in range(len(header)) if i != col]
    x = np.zeros((len(body), len(features)))
    for r, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise DatasetError(f"{path}:{r}: {len(row)} fields, the header has {len(header)}")
        for k, i in enumerate(features):
            try:
                x[r - 2, k] = float(row[i])
            except ValueError:
                raise DatasetError(f"{path}:{r}: column {header[i]!r}: {row[i]!r} is not a number") from None
    labels = _binary_labels(np.array([row[col] for row in body]), positive, path)
    return Dataset(Path(path).stem, _present(x), labels, len(features))


def from_libsvm(path: str, positive: str | None) -> Dataset:
    from sklearn.datasets import load_svmlight_file

    p = _existing(path)
    try:
        x, y = load_svmlight_file(str(p))
    except ValueError as e:
        raise DatasetError(f"{path}: not a valid libsvm file: {e}") from None
    samples = [tuple(int(j) for j in x[i].indices[x[i].data != 0]) for i in range(x.shape[0])]
    labels = _binary_labels(np.array([f"{v:g}" for v in y]), positive, path)
    return Dataset(Path(path).stem, samples, labels, x.shape[1])


def _existing(path: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"dataset file {path!r} not found (looked in {p.resolve().parent})")
    return p


def load_dataset(cfg: DatasetConfig, seed: int) -> Dataset:
    if cfg.name == "synthetic_sparse":
        return synthetic_sparse(cfg.samples, cfg.features, cfg.avg_length, cfg.noise, seed)
    if cfg.name == "breast_cancer":
        return breast_cancer()
    if cfg.name == "digits":
        return digits(cfg.positive)
    if cfg.name == "tictactoe":
        return tictactoe()
    if cfg.name == "csv":
        assert cfg.path is not None
        return from_csv(cfg.path, cfg.label_column, cfg.positive)
    if cfg.name == "libsvm":
        assert cfg.path is not None
        return from_libsvm(cfg.path, cfg.positive)
    raise DatasetError(f"dataset.name: unknown dataset {cfg.name!r}")


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
