"""Datasets that need no download, encoded as the models take them, split deterministically.

For the sparse perceptron a sample is the sorted tuple of indices of its present features.
* `synthetic_sparse`: a bag-of-words stand-in for review sentiment. Word frequencies follow a Zipf
  law; a fifth of the vocabulary carries a polarity that tilts its frequency by class.
* `breast_cancer`: scikit-learn's bundled set; each feature is present when above its median.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def load_dataset(cfg: DatasetConfig, seed: int) -> Dataset:
    if cfg.name == "synthetic_sparse":
        return synthetic_sparse(cfg.samples, cfg.features, cfg.avg_length, cfg.noise, seed)
    if cfg.name == "breast_cancer":
        return breast_cancer()
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
