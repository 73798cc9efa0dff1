"""Model specs for the deployer: one frozen dataclass per model contract (the `ModelSpec` protocol of
`contracts.deploy`), holding the model in the contracts' fixed point (scale 1e9) and knowing how to
split its initialisation into transactions that fit the block gas limit.

Chunk sizes come from a per-item gas estimate (a fresh storage slot costs 22.1k gas, shared by the
items packed into it, plus calldata) and half the block gas limit, so a chunk leaves room for other
traffic and for the deployer's 25% estimate padding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from .abi import ContractABI
from .deploy import FIXED_POINT, DeploymentError, SparsePerceptronSpec

__all__ = [
    "FIXED_POINT",
    "SparsePerceptronSpec",
    "DensePerceptronSpec",
    "NaiveBayesSpec",
    "DenseNearestCentroidSpec",
    "SparseNearestCentroidSpec",
    "MODEL_CONTRACTS",
    "ModelSpecError",
    "naive_bayes_words",
    "sparse_centroid_words",
]

_CHUNK_BUDGET = 0.5
_GAS_PER_WEIGHT = 8_000  # int80, three per slot
_GAS_PER_CENTROID_VALUE = 7_000  # int64, four per slot
_GAS_PER_PACKED_WORD = 26_000  # one whole fresh slot (read first: it must be empty) plus calldata

INT64 = (-(2**63), 2**63 - 1)
INT80 = (-(2**79), 2**79 - 1)
UINT32_MAX = 2**32 - 1
UINT64_MAX = 2**64 - 1


class ModelSpecError(ValueError):
    """A model description the contracts cannot hold (the message names the field)."""


def _check_range(what: str, values: Sequence[int], lo: int, hi: int) -> None:
    for i, v in enumerate(values):
        if not isinstance(v, int) or isinstance(v, bool):
            raise ModelSpecError(f"{what}[{i}] must be an integer, got {type(v).__name__}")
        if not lo <= v <= hi:
            raise ModelSpecError(f"{what}[{i}] = {v} is outside [{lo}, {hi}]")


def _budget_items(gas_limit: int, per_item: int, multiple: int) -> int:
    size = int(gas_limit * _CHUNK_BUDGET) // per_item
    size -= size % multiple
    if size < multiple:
        raise DeploymentError(f"block gas limit {gas_limit} is too small to initialise the model")
    return size


def _classes(classifications: Sequence[str], n: int | None = None) -> None:
    if not classifications:
        raise ModelSpecError("classifications: at least one class is required")
    if n is not None and len(classifications) != n:
        raise ModelSpecError(f"classifications: {len(classifications)} names for {n} classes")


@dataclass(frozen=True)
class DensePerceptronSpec:
    """Binary perceptron on dense unit-norm inputs: weights, intercept, learning rate x1e9."""

    weights: list[int]
    intercept: int = 0
    learning_rate: int = FIXED_POINT // 2
    classifications: tuple[str, str] = ("Negative", "Positive")
    contract: ClassVar[str] = "DensePerceptron"

    def __post_init__(self) -> None:
        if not self.weights:
            raise ModelSpecError("weights: a dense perceptron needs at least one weight")
        _classes(self.classifications, 2)
        _check_range("weights", self.weights, *INT80)
        _check_range("intercept", [self.intercept], *INT80)
        _check_range("learning_rate", [self.learning_rate], *INT80)

    @property
    def n_features(self) -> int:
        return len(self.weights)

    def constructor(self) -> tuple[list[str], list[Any]]:
        return (["string[]", "int80", "int80", "uint256"],
                [list(self.classifications), self.intercept, self.learning_rate, self.n_features])

    def init_calls(self, abi: ContractABI, gas_limit: int) -> list[tuple[str, bytes]]:
        size = _budget_items(gas_limit, _GAS_PER_WEIGHT, 3)
        return [(f"initialise weights {s}..{min(s + size, self.n_features) - 1}",
                 abi.encode("initializeWeights", s, self.weights[s:s + size]))
                for s in range(0, self.n_features, size)]


def naive_bayes_words(feature_counts: Sequence[Mapping[int, int]]) -> dict[tuple[int, int], int]:
    """Counts packed as the contract stores them: {(class group, feature group): word}; lane
    2 * (f - 4q) + (k - 2g) of 32 bits holds count_k[f]. All-zero words are left out."""
    words: dict[tuple[int, int], int] = {}
    for k, counts in enumerate(feature_counts):
        for f, n in counts.items():
            if n:
                key = (k >> 1, f >> 2)
                words[key] = words.get(key, 0) | (n << (32 * (2 * (f & 3) + (k & 1))))
    return words


def sparse_centroid_words(sums: Sequence[Mapping[int, int]]) -> dict[tuple[int, int], int]:
    """Sums packed as the contract stores them: lane 2 * (j - 2q) + (k - 2g) of 64 bits holds s_kj."""
    words: dict[tuple[int, int], int] = {}
    for k, per_class in enumerate(sums):
        for j, s in per_class.items():
            if s:
                key = (k >> 1, j >> 1)
                words[key] = words.get(key, 0) | (s << (64 * (2 * (j & 1) + (k & 1))))
    return words


def _packed_calls(abi: ContractABI, fn: str, words: dict[tuple[int, int], int], gas_limit: int,
                  what: str) -> list[tuple[str, bytes]]:
    size = _budget_items(gas_limit, _GAS_PER_PACKED_WORD, 1)
    calls: list[tuple[str, bytes]] = []
    for g in sorted({g for g, _ in words}):
        groups = sorted(q for gg, q in words if gg == g)
        for s in range(0, len(groups), size):
            chunk = groups[s:s + size]
            calls.append((f"initialise {what} of classes {2 * g}-{2 * g + 1}, slots {s}..{s + len(chunk) - 1}",
                          abi.encode(fn, g, chunk, [words[(g, q)] for q in chunk])))
    return calls


@dataclass(frozen=True)
class NaiveBayesSpec:
    """Multinomial naive Bayes: per class the sample count and the count of each feature (sparse map
    feature -> count, uint32); smoothing x1e9 (1e9 = Laplace)."""

    class_counts: list[int]
    feature_counts: list[dict[int, int]]
    vocabulary_size: int
    smoothing: int = FIXED_POINT
    classifications: tuple[str, ...] = ("Negative", "Positive")
    contract: ClassVar[str] = "NaiveBayes"

    def __post_init__(self) -> None:
        k = len(self.class_counts)
        _classes(self.classifications, k)
        if len(self.feature_counts) != k:
            raise ModelSpecError(f"feature_counts: {len(self.feature_counts)} classes, expected {k}")
        if not 0 < self.vocabulary_size < 2**40:
            raise ModelSpecError(f"vocabulary_size = {self.vocabulary_size} must be in [1, 2^40)")
        if not 0 < self.smoothing <= UINT64_MAX:
            raise ModelSpecError(f"smoothing = {self.smoothing} must be in [1, 2^64)")
        _check_range("class_counts", self.class_counts, 0, UINT64_MAX)
        for c, counts in enumerate(self.feature_counts):
            for f, n in counts.items():
                if not 0 <= f < self.vocabulary_size:
                    raise ModelSpecError(f"feature_counts[{c}]: feature {f} outside the vocabulary "
                                         f"[0, {self.vocabulary_size})")
                if not isinstance(n, int) or not 0 <= n <= UINT32_MAX:
                    raise ModelSpecError(f"feature_counts[{c}][{f}] = {n} is not a uint32 count")
            if sum(counts.values()) > UINT64_MAX:
                raise ModelSpecError(f"feature_counts[{c}]: total count exceeds 2^64")

    @property
    def n_features(self) -> int:
        return self.vocabulary_size

    def constructor(self) -> tuple[list[str], list[Any]]:
        return (["string[]", "uint64[]", "uint64", "uint64"],
                [list(self.classifications), list(self.class_counts), self.vocabulary_size, self.smoothing])

    def init_calls(self, abi: ContractABI, gas_limit: int) -> list[tuple[str, bytes]]:
        return _packed_calls(abi, "initializeCounts", naive_bayes_words(self.feature_counts), gas_limit, "counts")


@dataclass(frozen=True)
class DenseNearestCentroidSpec:
    """Dense nearest centroid: one int64 centroid (x1e9) and a sample count per class."""

    centroids: list[list[int]]
    data_counts: list[int]
    classifications: tuple[str, ...] = ("Negative", "Positive")
    contract: ClassVar[str] = "DenseNearestCentroid"

    def __post_init__(self) -> None:
        k = len(self.centroids)
        _classes(self.classifications, k)
        if len(self.data_counts) != k:
            raise ModelSpecError(f"data_counts: {len(self.data_counts)} counts for {k} classes")
        if not self.centroids[0]:
            raise ModelSpecError("centroids: a centroid needs at least one dimension")
        d = len(self.centroids[0])
        for c, centroid in enumerate(self.centroids):
            if len(centroid) != d:
                raise ModelSpecError(f"centroids[{c}] has {len(centroid)} dimensions, expected {d}")
            _check_range(f"centroids[{c}]", centroid, *INT64)
        _check_range("data_counts", self.data_counts, 0, UINT64_MAX)

    @property
    def n_features(self) -> int:
        return len(self.centroids[0])

    def constructor(self) -> tuple[list[str], list[Any]]:
        return (["string[]", "uint64[]", "uint256"],
                [list(self.classifications), list(self.data_counts), self.n_features])

    def init_calls(self, abi: ContractABI, gas_limit: int) -> list[tuple[str, bytes]]:
        size = _budget_items(gas_limit, _GAS_PER_CENTROID_VALUE, 4)
        calls = []
        for k, centroid in enumerate(self.centroids):
            for s in range(0, self.n_features, size):
                chunk = centroid[s:s + size]
                if any(chunk):  # storage starts at zero
                    calls.append((f"initialise centroid {k} values {s}..{s + len(chunk) - 1}",
                                  abi.encode("initializeCentroid", k, s, chunk)))
        return calls


@dataclass(frozen=True)
class SparseNearestCentroidSpec:
    """Sparse nearest centroid over binary features: per class the sample count n_k and the sums
    s_kj = 1e9 * (sum of feature j over the class's samples), so the centroid is s_kj / n_k."""

    sums: list[dict[int, int]]
    data_counts: list[int]
    vocabulary_size: int  # indices must lie below it
    classifications: tuple[str, ...] = ("Negative", "Positive")
    contract: ClassVar[str] = "SparseNearestCentroid"

    def __post_init__(self) -> None:
        k = len(self.sums)
        _classes(self.classifications, k)
        if len(self.data_counts) != k:
            raise ModelSpecError(f"data_counts: {len(self.data_counts)} counts for {k} classes")
        if not 0 < self.vocabulary_size < 2**40:
            raise ModelSpecError(f"vocabulary_size = {self.vocabulary_size} must be in [1, 2^40)")
        _check_range("data_counts", self.data_counts, 0, UINT32_MAX)
        for c, per_class in enumerate(self.sums):
            for j, s in per_class.items():
                if not 0 <= j < self.vocabulary_size:
                    raise ModelSpecError(f"sums[{c}]: feature {j} outside [0, {self.vocabulary_size})")
                if not isinstance(s, int) or not 0 <= s <= UINT64_MAX:
                    raise ModelSpecError(f"sums[{c}][{j}] = {s} is not a uint64")
            if self.data_counts[c] == 0 and any(per_class.values()):
                raise ModelSpecError(f"sums[{c}]: a class without samples must have zero sums")

    @classmethod
    def from_centroids(cls, centroids: Sequence[Mapping[int, int]], data_counts: Sequence[int], n_features: int,
                       classifications: Sequence[str] = ("Negative", "Positive")) -> SparseNearestCentroidSpec:
        """From fixed-point centroid values (x1e9): s_kj = c_kj * n_k."""
        return cls([{j: v * n for j, v in c.items()} for c, n in zip(centroids, data_counts)],
                   list(data_counts), n_features, tuple(classifications))

    @property
    def n_features(self) -> int:
        return self.vocabulary_size

    def constructor(self) -> tuple[list[str], list[Any]]:
        return (["string[]", "uint64[]", "uint64"],
                [list(self.classifications), list(self.data_counts), self.vocabulary_size])

    def init_calls(self, abi: ContractABI, gas_limit: int) -> list[tuple[str, bytes]]:
        return _packed_calls(abi, "initializeSums", sparse_centroid_words(self.sums), gas_limit, "sums")


MODEL_CONTRACTS: dict[str, type] = {
    "SparsePerceptron": SparsePerceptronSpec,
    "DensePerceptron": DensePerceptronSpec,
    "NaiveBayes": NaiveBayesSpec,
    "DenseNearestCentroid": DenseNearestCentroidSpec,
    "SparseNearestCentroid": SparseNearestCentroidSpec,
}
