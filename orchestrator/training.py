"""Train the initial model off-chain and express it in the contracts' fixed point.

One trainer per model family, each producing the spec `contracts.deploy.deploy_system` deploys. The
samples are already in the model's input form (`datasets.for_model`): present-feature indices for
the sparse models, unit-norm fixed-point vectors for the dense ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from contracts.deploy import FIXED_POINT, SparsePerceptronSpec
from contracts.models import (
    DenseNearestCentroidSpec,
    DensePerceptronSpec,
    NaiveBayesSpec,
    SparseNearestCentroidSpec,
)

from .datasets import Dataset, to_csr
from .scenario import ModelConfig


def _class_names(ds: Dataset) -> tuple[str, ...]:
    # The perceptron contracts' two names stay the ones they always had; multi-class models name
    # each class by its label value.
    return ("Negative", "Positive") if ds.n_classes == 2 else ds.class_names


def train_sparse_perceptron(
    ds: Dataset, rows: np.ndarray, learning_rate: float, intercept: float, seed: int
) -> SparsePerceptronSpec:
    """scikit-learn's Perceptron moves each present feature's weight by eta0 on a mistake, which is
    the contract's own rule, so its weights scale straight to fixed point. The intercept is not
    learned (the contract never updates it either)."""
    from sklearn.linear_model import Perceptron

    x = to_csr([ds.samples[i] for i in rows], ds.n_features)
    y = ds.labels[rows]
    clf = Perceptron(eta0=learning_rate, fit_intercept=False, max_iter=50, tol=None, shuffle=True,
                     random_state=seed)
    clf.fit(x, y)
    weights = [int(round(w * FIXED_POINT)) for w in clf.coef_[0]]
    return SparsePerceptronSpec(
        weights=weights,
        intercept=int(round(intercept * FIXED_POINT)),
        learning_rate=int(round(learning_rate * FIXED_POINT)),
    )


def train_dense_perceptron(
    ds: Dataset, rows: np.ndarray, learning_rate: float, intercept: float, seed: int
) -> DensePerceptronSpec:
    """Same rule on dense inputs: on a mistake w += eta0 * x, with x the fixed-point vector / 1e9,
    which the contract computes as trunc(d_i * rate / 1e9); the constant last component of every
    sample plays the intercept's part."""
    from sklearn.linear_model import Perceptron

    x = np.array([ds.samples[i] for i in rows], dtype=np.float64) / FIXED_POINT
    clf = Perceptron(eta0=learning_rate, fit_intercept=False, max_iter=50, tol=None, shuffle=True,
                     random_state=seed)
    clf.fit(x, ds.labels[rows])
    return DensePerceptronSpec(
        weights=[int(round(w * FIXED_POINT)) for w in clf.coef_[0]],
        intercept=int(round(intercept * FIXED_POINT)),
        learning_rate=int(round(learning_rate * FIXED_POINT)),
    )


def train_naive_bayes(ds: Dataset, rows: np.ndarray, smoothing: float) -> NaiveBayesSpec:
    """Counts are the model: per class the samples and each feature's occurrences in them, exactly
    what the contract's update adds per contribution."""
    k = ds.n_classes
    class_counts = [0] * k
    feature_counts: list[dict[int, int]] = [{} for _ in range(k)]
    for i in rows:
        c = int(ds.labels[i])
        class_counts[c] += 1
        counts = feature_counts[c]
        for f in ds.samples[i]:
            counts[f] = counts.get(f, 0) + 1
    return NaiveBayesSpec(class_counts=class_counts, feature_counts=feature_counts, vocabulary_size=ds.n_features,
                          smoothing=int(round(smoothing * FIXED_POINT)), classifications=_class_names(ds))


def train_sparse_nearest_centroid(ds: Dataset, rows: np.ndarray) -> SparseNearestCentroidSpec:
    """The contract keeps per class the sample count and 1e9 x the per-feature sums; the centroid is
    their ratio, so the initial model is those sums over the init rows."""
    k = ds.n_classes
    counts = [0] * k
    sums: list[dict[int, int]] = [{} for _ in range(k)]
    for i in rows:
        c = int(ds.labels[i])
        counts[c] += 1
        for j in ds.samples[i]:
            sums[c][j] = sums[c].get(j, 0) + FIXED_POINT
    return SparseNearestCentroidSpec(sums=sums, data_counts=counts, vocabulary_size=ds.n_features,
                                     classifications=_class_names(ds))


def train_dense_nearest_centroid(ds: Dataset, rows: np.ndarray) -> DenseNearestCentroidSpec:
    """Centroids are the class means of the fixed-point vectors (rounded); a class absent from the
    init rows starts at the origin with no samples, and its first contribution becomes its centroid."""
    k = ds.n_classes
    x = np.array([ds.samples[i] for i in rows], dtype=np.float64)
    y = ds.labels[rows]
    centroids: list[list[int]] = []
    counts: list[int] = []
    for c in range(k):
        mine = x[y == c]
        counts.append(int(mine.shape[0]))
        centroids.append([int(round(v)) for v in mine.mean(axis=0)] if mine.shape[0] else [0] * ds.n_features)
    return DenseNearestCentroidSpec(centroids=centroids, data_counts=counts, classifications=_class_names(ds))


def train_initial(ds: Dataset, rows: np.ndarray, cfg: ModelConfig, seed: int) -> Any:
    """The initial model of `cfg.type` trained on `rows` of `ds` (in the model's input form)."""
    if cfg.type == "sparse_perceptron":
        assert cfg.learning_rate is not None and cfg.intercept is not None
        return train_sparse_perceptron(ds, rows, cfg.learning_rate, cfg.intercept, seed)
    if cfg.type == "dense_perceptron":
        assert cfg.learning_rate is not None and cfg.intercept is not None
        return train_dense_perceptron(ds, rows, cfg.learning_rate, cfg.intercept, seed)
    if cfg.type == "naive_bayes":
        assert cfg.smoothing is not None
        return train_naive_bayes(ds, rows, cfg.smoothing)
    if cfg.type == "sparse_nearest_centroid":
        return train_sparse_nearest_centroid(ds, rows)
    if cfg.type == "dense_nearest_centroid":
        return train_dense_nearest_centroid(ds, rows)
    raise ValueError(f"model.type: no trainer for {cfg.type!r}")
