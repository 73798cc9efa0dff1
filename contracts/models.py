"""Model specs for the deployer (the `ModelSpec` protocol of `contracts.deploy`): one frozen
dataclass per model contract, holding the model in the contracts' fixed point (scale 1e9) and
splitting its initialisation into transactions that fit the block gas limit.

Each spec now lives in its family's module (`contracts.families`); this module keeps the names
importable from where they always were.
"""

from __future__ import annotations

from .deploy import FIXED_POINT, SparsePerceptronSpec
from .families import families
from .families.common import INT64, INT80, UINT32_MAX, UINT64_MAX, ModelSpecError
from .families.dense_nearest_centroid import DenseNearestCentroidSpec
from .families.dense_perceptron import DensePerceptronSpec
from .families.naive_bayes import NaiveBayesSpec, naive_bayes_words
from .families.sparse_nearest_centroid import SparseNearestCentroidSpec, sparse_centroid_words

__all__ = [
    "FIXED_POINT",
    "INT64",
    "INT80",
    "UINT32_MAX",
    "UINT64_MAX",
    "SparsePerceptronSpec",
    "DensePerceptronSpec",
    "NaiveBayesSpec",
    "DenseNearestCentroidSpec",
    "SparseNearestCentroidSpec",
    "MODEL_CONTRACTS",
    "ModelSpecError",
    "model_contracts",
    "naive_bayes_words",
    "sparse_centroid_words",
]


def model_contracts() -> dict[str, type]:
    """Contract name -> spec type, over every registered family (plugins included)."""
    out: dict[str, type] = {}
    for f in families():
        out.setdefault(f.contract, f.spec_type)
    return out


# The shipped contracts as they were (a snapshot: use `model_contracts()` to see plugins).
MODEL_CONTRACTS: dict[str, type] = {
    "SparsePerceptron": SparsePerceptronSpec,
    "DensePerceptron": DensePerceptronSpec,
    "NaiveBayes": NaiveBayesSpec,
    "DenseNearestCentroid": DenseNearestCentroidSpec,
    "SparseNearestCentroid": SparseNearestCentroidSpec,
}
