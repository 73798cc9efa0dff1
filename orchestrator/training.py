"""Train the initial model off-chain and express it in the contracts' fixed point."""

from __future__ import annotations

import numpy as np

from contracts.deploy import FIXED_POINT, SparsePerceptronSpec

from .datasets import Dataset, to_csr


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
