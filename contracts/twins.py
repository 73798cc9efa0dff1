"""Exact off-chain twins of the on-chain models: same integer arithmetic, same rounding.

They evaluate the model held by the chain at any block quickly (a couple of batched reads, then
numpy or plain integer loops), and let tests check the contracts bit for bit. Each twin has
`predict(samples)` (a batch), `predict_one(sample)`, `update(sample, label)` (the contract's update,
including "only on a mistake" for the perceptrons), `from_chain(...)` and `from_spec(spec)`.
Inputs the contract would reject raise `ModelRevert` naming the contract's custom error.

Each twin lives in its family's module (`contracts.families`); the dispatch below asks the registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from .families import by_contract
from .families.common import ModelRevert
from .families.dense_nearest_centroid import DenseNearestCentroidTwin
from .families.dense_perceptron import DensePerceptronTwin
from .families.naive_bayes import NaiveBayesTwin
from .families.sparse_nearest_centroid import SparseNearestCentroidTwin
from .families.sparse_perceptron import SparsePerceptronTwin
from .rpc import RpcClient

__all__ = [
    "ModelRevert",
    "Twin",
    "TWINS",
    "SparsePerceptronTwin",
    "DensePerceptronTwin",
    "NaiveBayesTwin",
    "DenseNearestCentroidTwin",
    "SparseNearestCentroidTwin",
    "twin_from_chain",
    "twin_from_spec",
]


class Twin(Protocol):
    def predict(self, samples: Sequence[Sequence[int]]) -> np.ndarray: ...

    def predict_one(self, sample: Sequence[int]) -> int: ...

    def update(self, sample: Sequence[int], label: int) -> None: ...


TWINS: dict[str, type] = {
    "SparsePerceptron": SparsePerceptronTwin,
    "DensePerceptron": DensePerceptronTwin,
    "NaiveBayes": NaiveBayesTwin,
    "DenseNearestCentroid": DenseNearestCentroidTwin,
    "SparseNearestCentroid": SparseNearestCentroidTwin,
}


async def twin_from_chain(client: RpcClient, system: Any, block: int | str = "latest") -> Twin:
    """The twin of `system`'s model (a `contracts.deploy.DeployedSystem`) with its state at `block`."""
    try:
        family = by_contract(system.model_contract)
    except ValueError as e:
        raise ValueError(f"no twin for model contract {system.model_contract!r}: {e}") from None
    twin: Twin = await family.twin_from_chain(client, system, block)
    return twin


def twin_from_spec(spec: Any) -> Twin:
    """The twin of a model spec, i.e. of the model as it is right after deployment."""
    try:
        family = by_contract(spec.contract)
    except ValueError:
        raise ValueError(f"no twin for model contract {spec.contract!r}") from None
    twin: Twin = family.twin_from_spec(spec)
    return twin
