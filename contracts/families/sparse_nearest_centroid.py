"""Sparse nearest centroid over binary features (SparseNearestCentroid.sol): per class the sample
count n_k and the sums s_kj = 1e9 * (sum of feature j over the class's samples), packed four to a
word; the centroid is s_kj / n_k and distances are compared exactly as fractions."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..abi import ContractABI
from ..deploy import FIXED_POINT
from ..encoders import round_half_up
from ..rpc import RpcClient
from .base import GasTable, ModelFamily
from .common import (
    ONE,
    ONE_SQUARED,
    READ_CHUNK,
    UINT32_MAX,
    UINT64_MAX,
    FileReader,
    ModelRevert,
    ModelSpecError,
    check_classes,
    check_range,
    class_names,
    int_keys,
    packed_calls,
    read_class_state,
    read_views,
)


def sparse_centroid_words(sums: Sequence[Mapping[int, int]]) -> dict[tuple[int, int], int]:
    """Sums packed as the contract stores them: lane 2 * (j - 2q) + (k - 2g) of 64 bits holds s_kj."""
    words: dict[tuple[int, int], int] = {}
    for k, per_class in enumerate(sums):
        for j, s in per_class.items():
            if s:
                key = (k >> 1, j >> 1)
                words[key] = words.get(key, 0) | (s << (64 * (2 * (j & 1) + (k & 1))))
    return words


@dataclass(frozen=True)
class SparseNearestCentroidSpec:
    """Per class the sample count n_k and the sums s_kj = 1e9 * (sum of feature j over the class's
    samples), so the centroid is s_kj / n_k."""

    sums: list[dict[int, int]]
    data_counts: list[int]
    vocabulary_size: int  # indices must lie below it
    classifications: tuple[str, ...] = ("Negative", "Positive")
    contract: ClassVar[str] = "SparseNearestCentroid"

    def __post_init__(self) -> None:
        k = len(self.sums)
        check_classes(self.classifications, k)
        if len(self.data_counts) != k:
            raise ModelSpecError(f"data_counts: {len(self.data_counts)} counts for {k} classes")
        if not 0 < self.vocabulary_size < 2**40:
            raise ModelSpecError(f"vocabulary_size = {self.vocabulary_size} must be in [1, 2^40)")
        check_range("data_counts", self.data_counts, 0, UINT32_MAX)
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
        return packed_calls(abi, "initializeSums", sparse_centroid_words(self.sums), gas_limit, "sums")


@dataclass
class SparseNearestCentroidTwin:
    """Sums s_kj (x1e9), counts n_k and q_k = sum_j s_kj^2; exact comparison of
    A_k / n_k^2 with A_k = q_k + 1e18 * L * n_k^2 - 2e9 * n_k * T_k."""

    sums: np.ndarray  # (classes, vocabulary) uint64
    num_samples: list[int]
    sum_squares: list[int]

    @property
    def vocabulary_size(self) -> int:
        return int(self.sums.shape[1])

    def _check(self, sample: Sequence[int]) -> list[int]:
        out = [int(j) for j in sample]
        for i, j in enumerate(out):
            if not 0 <= j < self.vocabulary_size:
                raise ModelRevert("FeatureOutOfRange", f"feature {j}, vocabulary {self.vocabulary_size}")
            if i and j <= out[i - 1]:
                raise ModelRevert("UnsortedIndices", f"position {i}")
        return out

    def scaled_distances(self, sample: Sequence[int]) -> list[tuple[int, int]]:
        """(A_k, n_k^2) per class: the squared distance is A_k / n_k^2 (scale 1e18)."""
        x = self._check(sample)
        out = []
        for k, (n, q) in enumerate(zip(self.num_samples, self.sum_squares)):
            t = sum(self.sums[k, x].tolist()) if x else 0
            n2 = 1 if n == 0 else n * n
            out.append((q + ONE_SQUARED * len(x) * n2 - 2 * ONE * n * t, n2))
        return out

    def predict_one(self, sample: Sequence[int]) -> int:
        best, best_a, best_n2 = 0, 0, 0
        for k, (a, n2) in enumerate(self.scaled_distances(sample)):
            if best_n2 == 0 or a * best_n2 < best_a * n2:
                best, best_a, best_n2 = k, a, n2
        return best

    def predict(self, samples: Sequence[Sequence[int]]) -> np.ndarray:
        return np.array([self.predict_one(s) for s in samples], dtype=np.int64)

    def update(self, sample: Sequence[int], label: int) -> None:
        if not 0 <= label < len(self.num_samples):
            raise ModelRevert("BadClassification", f"label {label}")
        x = self._check(sample)
        row = self.sums[label]
        added = 0
        for j in x:
            s = int(row[j])
            if s > 2**64 - 1 - ONE:
                raise ModelRevert("ValueOverflow", f"feature {j}")
            added += 2 * ONE * s + ONE_SQUARED
        if self.num_samples[label] + 1 > 2**32 - 1:
            raise ModelRevert("ValueOverflow", "sample count")
        for j in x:
            row[j] += ONE
        self.sum_squares[label] += added
        self.num_samples[label] += 1

    @classmethod
    def from_spec(cls, spec: Any) -> SparseNearestCentroidTwin:
        sums = np.zeros((len(spec.sums), spec.vocabulary_size), dtype=np.uint64)
        for k, per_class in enumerate(spec.sums):
            for j, s in per_class.items():
                sums[k, j] = s
        return cls(sums, list(spec.data_counts), [sum(s * s for s in per_class.values()) for per_class in spec.sums])

    @classmethod
    async def from_chain(cls, client: RpcClient, model: str, abi: ContractABI, block: int | str = "latest"
                         ) -> SparseNearestCentroidTwin:
        num_samples, squares, v, _ = await read_class_state(client, model, abi, block, "nFeatures", "numClasses")
        k = len(num_samples)
        groups = (v + 1) // 2
        calls = [("getSumWords", (g, s, min(READ_CHUNK, groups - s)))
                 for g in range((k + 1) // 2) for s in range(0, groups, READ_CHUNK)]
        words = await read_views(client, model, abi, calls, block)
        sums = np.zeros((k + k % 2, groups * 2), dtype=np.uint64)
        for (_, (g, s, n)), chunk in zip(calls, words):
            w = np.array([int(x) for x in chunk], dtype=object)
            for lane in range(4):  # lane 2 * (j - 2q) + (k - 2g), 64 bits
                sums[2 * g + (lane & 1), 2 * s + (lane >> 1):2 * (s + n):2] = \
                    ((w >> (64 * lane)) & 0xFFFFFFFFFFFFFFFF).astype(np.uint64)
        return cls(sums[:k, :v].copy(), num_samples, squares)


class SparseNearestCentroid(ModelFamily):
    name = "sparse_nearest_centroid"
    contract = "SparseNearestCentroid"
    spec_type = SparseNearestCentroidSpec
    twin_type = SparseNearestCentroidTwin
    file_types = ("sparse nearest centroid classifier",)
    description = "nearest centroid over binary present-feature indices, two or more classes"
    # Fitted by `python -m benchmarks.gas_limits --fit` to the worst cases (anvil 1.7.1, optimizer on);
    # the same storage pattern as naive_bayes.py.
    gas: GasTable = {
        "stakeable": {
            "add": (82_500, 23_000, 0, 0),
            "refund": (80_000, 500, 3_750, 1_250),
            "report": (78_250, 500, 3_750, 1_250),
            "predict": (27_500, 500, 3_750, 1_250),
        },
        "points": {
            "add": (74_750, 23_000, 0, 0),
            "refund": (93_500, 500, 3_750, 1_250),
            "report": (100_500, 500, 3_750, 1_250),
            "predict": (27_500, 500, 3_750, 1_250),
        },
    }

    def train(self, ds: Any, rows: np.ndarray, options: Mapping[str, float], seed: int) -> SparseNearestCentroidSpec:
        """The contract keeps per class the sample count and 1e9 x the per-feature sums; the centroid
        is their ratio, so the initial model is those sums over the init rows."""
        k = ds.n_classes
        counts = [0] * k
        sums: list[dict[int, int]] = [{} for _ in range(k)]
        for i in rows:
            c = int(ds.labels[i])
            counts[c] += 1
            for j in ds.samples[i]:
                sums[c][j] = sums[c].get(j, 0) + FIXED_POINT
        return SparseNearestCentroidSpec(sums=sums, data_counts=counts, vocabulary_size=ds.n_features,
                                         classifications=class_names(ds))

    def spec_from_json(self, data: Mapping[str, Any]) -> SparseNearestCentroidSpec:
        return SparseNearestCentroidSpec(sums=int_keys(data["sums"]), data_counts=[int(n) for n in data["data_counts"]],
                                         vocabulary_size=int(data["vocabulary_size"]),
                                         classifications=tuple(data["classifications"]))

    def spec_of_twin(self, twin: Any, classifications: Sequence[str]) -> SparseNearestCentroidSpec:
        sums = [{int(j): int(row[j]) for j in np.flatnonzero(row)} for row in twin.sums]
        return SparseNearestCentroidSpec(sums, list(twin.num_samples), twin.vocabulary_size, tuple(classifications))

    def read_file(self, r: FileReader) -> SparseNearestCentroidSpec:
        classes, sums, counts = [], [], []
        top = -1
        for name, centroid, n in r.centroids():
            where = f"centroids[{name!r}].centroid"
            if not isinstance(centroid, dict):
                r.fail(where, "expected an object {\"index\": value}")
            per_class: dict[int, int] = {}
            for key, value in centroid.items():
                j = r.index(f"{where}[{key!r}]", key)
                if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                        or value < 0):
                    r.fail(f"{where}[{key!r}]", f"expected a non-negative number, got {value!r}")
                # s = 1e9 * value * n: exact for centroids of binary data (value * n is a count)
                per_class[j] = round_half_up(value * FIXED_POINT * n)
                top = max(top, j)
            classes.append(name)
            sums.append(per_class)
            counts.append(n)
        vocabulary = r.count("numFeatures", r.get("numFeatures", top + 1))
        if vocabulary <= top:
            r.fail("numFeatures", f"{vocabulary} is not above the largest feature index {top}")
        return SparseNearestCentroidSpec(sums=sums, data_counts=counts, vocabulary_size=vocabulary,
                                         classifications=tuple(classes))

    def write_file(self, spec: Any) -> dict[str, Any]:
        return {"type": self.file_types[0], "numFeatures": spec.vocabulary_size,
                "centroids": {name: {"centroid": {str(j): s / (FIXED_POINT * n) for j, s in sorted(c.items()) if s},
                                     "dataCount": n}
                              for name, c, n in zip(spec.classifications, spec.sums, spec.data_counts)}}


FAMILY = SparseNearestCentroid()
