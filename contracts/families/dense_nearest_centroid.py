"""Dense nearest centroid (DenseNearestCentroid.sol): one int64 centroid (x1e9) and a sample count
per class; argmin_k sum_j floor((d_j - c_kj)^2 / 1e9), ties to the lower class; running-mean update."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..abi import ContractABI
from ..rpc import RpcClient
from .base import GasTable, ModelFamily
from .common import (
    INT64,
    ONE,
    READ_CHUNK,
    UINT64_MAX,
    FileReader,
    ModelRevert,
    ModelSpecError,
    budget_items,
    check_classes,
    check_range,
    class_names,
    dense_checked,
    file_real,
    read_views,
    tdiv,
)

_GAS_PER_CENTROID_VALUE = 7_000  # int64, four per slot


@dataclass(frozen=True)
class DenseNearestCentroidSpec:
    """Dense nearest centroid: one int64 centroid (x1e9) and a sample count per class."""

    centroids: list[list[int]]
    data_counts: list[int]
    classifications: tuple[str, ...] = ("Negative", "Positive")
    contract: ClassVar[str] = "DenseNearestCentroid"

    def __post_init__(self) -> None:
        k = len(self.centroids)
        check_classes(self.classifications, k)
        if len(self.data_counts) != k:
            raise ModelSpecError(f"data_counts: {len(self.data_counts)} counts for {k} classes")
        if not self.centroids[0]:
            raise ModelSpecError("centroids: a centroid needs at least one dimension")
        d = len(self.centroids[0])
        for c, centroid in enumerate(self.centroids):
            if len(centroid) != d:
                raise ModelSpecError(f"centroids[{c}] has {len(centroid)} dimensions, expected {d}")
            check_range(f"centroids[{c}]", centroid, *INT64)
        check_range("data_counts", self.data_counts, 0, UINT64_MAX)

    @property
    def n_features(self) -> int:
        return len(self.centroids[0])

    def constructor(self) -> tuple[list[str], list[Any]]:
        return (["string[]", "uint64[]", "uint256"],
                [list(self.classifications), list(self.data_counts), self.n_features])

    def init_calls(self, abi: ContractABI, gas_limit: int) -> list[tuple[str, bytes]]:
        size = budget_items(gas_limit, _GAS_PER_CENTROID_VALUE, 4)
        calls = []
        for k, centroid in enumerate(self.centroids):
            for s in range(0, self.n_features, size):
                chunk = centroid[s:s + size]
                if any(chunk):  # storage starts at zero
                    calls.append((f"initialise centroid {k} values {s}..{s + len(chunk) - 1}",
                                  abi.encode("initializeCentroid", k, s, chunk)))
        return calls


@dataclass
class DenseNearestCentroidTwin:
    centroids: list[list[int]]
    data_counts: list[int]

    @property
    def n_features(self) -> int:
        return len(self.centroids[0])

    def distances(self, sample: Sequence[int]) -> list[int]:
        d = dense_checked(sample, self.n_features)
        return [sum((v - c) ** 2 // ONE for v, c in zip(d, centroid)) for centroid in self.centroids]

    def predict_one(self, sample: Sequence[int]) -> int:
        dist = self.distances(sample)
        return dist.index(min(dist))

    def predict(self, samples: Sequence[Sequence[int]]) -> np.ndarray:
        if len(samples) == 0:
            return np.zeros(0, dtype=np.int64)
        x = np.array([dense_checked(s, self.n_features) for s in samples], dtype=np.int64)
        c = np.array(self.centroids, dtype=np.int64)
        if np.abs(c).max() + np.abs(x).max() >= 3_000_000_000:  # squares could leave int64
            return np.array([self.predict_one(s) for s in samples], dtype=np.int64)
        dist = np.stack([((x - row) ** 2 // ONE).sum(axis=1) for row in c], axis=1)
        return dist.argmin(axis=1).astype(np.int64)  # argmin takes the first (lowest) class on ties

    def update(self, sample: Sequence[int], label: int) -> None:
        if not 0 <= label < len(self.centroids):
            raise ModelRevert("BadClassification", f"label {label}")
        d = dense_checked(sample, self.n_features)
        n = self.data_counts[label]
        if n >= 2**64 - 1:
            raise ModelRevert("CountOverflow")
        self.centroids[label] = [tdiv(c * n + v, n + 1) for c, v in zip(self.centroids[label], d)]
        self.data_counts[label] = n + 1

    @classmethod
    def from_spec(cls, spec: Any) -> DenseNearestCentroidTwin:
        return cls([list(c) for c in spec.centroids], list(spec.data_counts))

    @classmethod
    async def from_chain(cls, client: RpcClient, model: str, abi: ContractABI, block: int | str = "latest"
                         ) -> DenseNearestCentroidTwin:
        counts, n = await read_views(client, model, abi, [("getDataCounts", ()), ("nFeatures", ())], block)
        calls = [("getCentroid", (k, s, min(READ_CHUNK, n - s))) for k in range(len(counts))
                 for s in range(0, n, READ_CHUNK)]
        res = await read_views(client, model, abi, calls, block)
        centroids: list[list[int]] = [[] for _ in counts]
        for (_, (k, _s, _n)), chunk in zip(calls, res):
            centroids[k].extend(int(v) for v in chunk)
        return cls(centroids, [int(c) for c in counts])


class DenseNearestCentroid(ModelFamily):
    name = "dense_nearest_centroid"
    contract = "DenseNearestCentroid"
    spec_type = DenseNearestCentroidSpec
    twin_type = DenseNearestCentroidTwin
    file_types = ("dense nearest centroid classifier", "nearest centroid classifier")
    description = "nearest centroid on dense unit-norm vectors, two or more classes"
    dense = True
    # Fitted by `python -m benchmarks.gas_limits --fit` to the worst cases (anvil 1.7.1, optimizer on);
    # predict may stop a class early, the limits assume it never does. Points' refund and report
    # write fresh counters the Stakeable ones do not.
    gas: GasTable = {
        "stakeable": {
            "add": (98_250, 6_500, 0, 0),
            "refund": (80_250, 500, 2_000, 750),
            "report": (79_250, 1_000, 1_750, 750),
            "predict": (28_500, 1_000, 1_750, 750),
        },
        "points": {
            "add": (91_000, 6_500, 0, 0),
            "refund": (93_750, 500, 2_000, 750),
            "report": (101_500, 1_000, 1_750, 750),
            "predict": (28_500, 1_000, 1_750, 750),
        },
    }

    def train(self, ds: Any, rows: np.ndarray, options: Mapping[str, float], seed: int) -> DenseNearestCentroidSpec:
        """Centroids are the class means of the fixed-point vectors (rounded); a class absent from the
        init rows starts at the origin with no samples, and its first contribution becomes its centroid."""
        x = np.array([ds.samples[i] for i in rows], dtype=np.float64)
        y = ds.labels[rows]
        centroids: list[list[int]] = []
        counts: list[int] = []
        for c in range(ds.n_classes):
            mine = x[y == c]
            counts.append(int(mine.shape[0]))
            centroids.append([int(round(v)) for v in mine.mean(axis=0)] if mine.shape[0] else [0] * ds.n_features)
        return DenseNearestCentroidSpec(centroids=centroids, data_counts=counts, classifications=class_names(ds))

    def spec_from_json(self, data: Mapping[str, Any]) -> DenseNearestCentroidSpec:
        return DenseNearestCentroidSpec(centroids=[[int(v) for v in c] for c in data["centroids"]],
                                        data_counts=[int(n) for n in data["data_counts"]],
                                        classifications=tuple(data["classifications"]))

    def spec_of_twin(self, twin: Any, classifications: Sequence[str]) -> DenseNearestCentroidSpec:
        return DenseNearestCentroidSpec([list(c) for c in twin.centroids], list(twin.data_counts),
                                        tuple(classifications))

    def read_file(self, r: FileReader) -> DenseNearestCentroidSpec:
        classes, centroids, counts = [], [], []
        for name, centroid, n in r.centroids():
            if not isinstance(centroid, list):
                r.fail(f"centroids[{name!r}].centroid", "expected a list of values")
            classes.append(name)
            centroids.append([r.real(f"centroids[{name!r}].centroid[{i}]", v, INT64) for i, v in enumerate(centroid)])
            counts.append(n)
        return DenseNearestCentroidSpec(centroids=centroids, data_counts=counts, classifications=tuple(classes))

    def write_file(self, spec: Any) -> dict[str, Any]:
        return {"type": self.file_types[0],
                "centroids": {name: {"centroid": [file_real(v) for v in c], "dataCount": n}
                              for name, c, n in zip(spec.classifications, spec.centroids, spec.data_counts)}}


FAMILY = DenseNearestCentroid()
