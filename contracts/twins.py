"""Exact off-chain twins of the on-chain models: same integer arithmetic, same rounding.

They evaluate the model held by the chain at any block quickly (a couple of batched reads, then
numpy or plain integer loops), and let tests check the contracts bit for bit. Each twin has
`predict(samples)` (a batch), `predict_one(sample)`, `update(sample, label)` (the contract's update,
including "only on a mistake" for the perceptrons), `from_chain(...)` and `from_spec(spec)`.
Inputs the contract would reject raise `ModelRevert` naming the contract's custom error.
`twin_from_chain(client, system, block)` picks the twin for a deployed system's model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .abi import ContractABI
from .rpc import RpcClient

_READ_CHUNK = 4_000  # items per eth_call: keeps each view call far below any node's call gas cap
ONE = 10**9
ONE_SQUARED = 10**18
NORM_TOLERANCE = 10**11
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_INT80_MIN, _INT80_MAX = -(2**79), 2**79 - 1


class ModelRevert(ValueError):
    """The contract would revert on this input or update; `error` is its custom error's name."""

    def __init__(self, error: str, detail: str = ""):
        super().__init__(f"{error}: {detail}" if detail else error)
        self.error = error


class Twin(Protocol):
    def predict(self, samples: Sequence[Sequence[int]]) -> np.ndarray: ...

    def predict_one(self, sample: Sequence[int]) -> int: ...

    def update(self, sample: Sequence[int], label: int) -> None: ...


def _tag(block: int | str) -> str:
    return hex(block) if isinstance(block, int) else block


async def _read(client: RpcClient, address: str, abi: ContractABI, calls: Sequence[tuple[str, tuple[Any, ...]]],
                block: int | str) -> list[Any]:
    """Several view calls to one contract at one block, in one JSON-RPC batch."""
    tag = _tag(block)
    replies = await client.batch([("eth_call", [{"to": address, "data": "0x" + abi.encode(fn, *args).hex()}, tag])
                                  for fn, args in calls])
    out = []
    for (fn, _), r in zip(calls, replies):
        if isinstance(r, Exception):
            raise r
        out.append(abi.fn(fn).decode(bytes.fromhex(r[2:])))
    return out


def _tdiv(a: int, b: int) -> int:
    """Integer division truncated toward zero, as Solidity's signed division."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _dense_checked(sample: Sequence[int], n: int) -> list[int]:
    """The dense models' input check: length, int64 values, |sum d^2 - 1e18| < 1e11."""
    if len(sample) != n:
        raise ModelRevert("DimensionMismatch", f"{len(sample)} values, expected {n}")
    values = [int(v) for v in sample]
    for i, v in enumerate(values):
        if not _INT64_MIN <= v <= _INT64_MAX:
            raise ModelRevert("MalformedValue", f"value {i} = {v} is not an int64")
    norm = sum(v * v for v in values)
    if abs(norm - ONE_SQUARED) >= NORM_TOLERANCE:
        raise ModelRevert("NotUnitNorm", f"sum of squares {norm}")
    return values


# ==================================================================================================
# Sparse perceptron
# ==================================================================================================


@dataclass
class SparsePerceptronTwin:
    weights: np.ndarray  # int64 fixed point; index = feature
    intercept: int
    learning_rate: int

    def scores(self, samples: Sequence[Sequence[int]]) -> np.ndarray:
        """intercept + sum of the weights of each sample's indices, exactly as the contract sums."""
        lengths = np.fromiter((len(s) for s in samples), dtype=np.int64, count=len(samples))
        flat = np.fromiter((i for s in samples for i in s), dtype=np.int64, count=int(lengths.sum()))
        w = self.weights
        bound = int(np.abs(w).max(initial=0)) * int(lengths.max(initial=0)) + abs(self.intercept)
        if bound >= 2**62:  # would overflow int64 sums: fall back to Python integers
            return np.array([self.intercept + sum(int(w[i]) for i in s) for s in samples], dtype=object)
        sums = np.zeros(len(samples), dtype=np.int64)
        if flat.size:
            owners = np.repeat(np.arange(len(samples)), lengths)
            np.add.at(sums, owners, w[flat])
        return sums + self.intercept

    def predict(self, samples: Sequence[Sequence[int]]) -> np.ndarray:
        return (self.scores(samples) > 0).astype(np.int64)

    def predict_one(self, sample: Sequence[int]) -> int:
        return int(self.intercept + sum(int(self.weights[i]) for i in sample) > 0)

    def update(self, sample: Sequence[int], label: int) -> None:
        if self.predict_one(sample) == label:
            return
        delta = self.learning_rate if label == 1 else -self.learning_rate
        for i in sample:  # a repeated index moves twice, as on chain
            self.weights[i] += delta

    @classmethod
    async def from_chain(
        cls, client: RpcClient, model: str, abi: ContractABI, n_features: int, block: int | str = "latest"
    ) -> SparsePerceptronTwin:
        calls = [("eth_call", [{"to": model, "data": "0x" + abi.encode("getWeights", start,
                                                                          min(_READ_CHUNK, n_features - start)).hex()},
                               hex(block) if isinstance(block, int) else block])
                 for start in range(0, n_features, _READ_CHUNK)]
        calls.append(("eth_call", [{"to": model, "data": "0x" + abi.encode("intercept").hex()},
                                   hex(block) if isinstance(block, int) else block]))
        calls.append(("eth_call", [{"to": model, "data": "0x" + abi.encode("learningRate").hex()},
                                   hex(block) if isinstance(block, int) else block]))
        results = await client.batch(calls)
        for r in results:
            if isinstance(r, Exception):
                raise r
        weights: list[int] = []
        for r in results[:-2]:
            weights.extend(abi.fn("getWeights").decode(bytes.fromhex(r[2:])))
        intercept = abi.fn("intercept").decode(bytes.fromhex(results[-2][2:]))
        lr = abi.fn("learningRate").decode(bytes.fromhex(results[-1][2:]))
        # int80 on chain: beyond int64, keep exact Python integers (scores() handles object arrays).
        fits = all(-(2**63) <= w < 2**63 for w in weights)
        return cls(np.array(weights, dtype=np.int64 if fits else object), int(intercept), int(lr))

    @classmethod
    def from_spec(cls, spec: Any) -> SparsePerceptronTwin:
        fits = all(-(2**63) <= w < 2**63 for w in spec.weights)
        return cls(np.array(spec.weights, dtype=np.int64 if fits else object), int(spec.intercept),
                   int(spec.learning_rate))


# ==================================================================================================
# Dense perceptron
# ==================================================================================================


@dataclass
class DensePerceptronTwin:
    """score = intercept * 1e9 + sum w_i d_i (exact); a mistake moves w_i by trunc(d_i * rate / 1e9)."""

    weights: list[int]
    intercept: int
    learning_rate: int

    @property
    def n_features(self) -> int:
        return len(self.weights)

    def score(self, sample: Sequence[int]) -> int:
        d = _dense_checked(sample, self.n_features)
        return self.intercept * ONE + sum(w * v for w, v in zip(self.weights, d))

    def predict_one(self, sample: Sequence[int]) -> int:
        return int(self.score(sample) > 0)

    def predict(self, samples: Sequence[Sequence[int]]) -> np.ndarray:
        if len(samples) == 0:
            return np.zeros(0, dtype=np.int64)
        rows = [_dense_checked(s, self.n_features) for s in samples]
        # Python integers through numpy object arrays: products reach 2^110, beyond int64.
        scores = np.array(rows, dtype=object) @ np.array(self.weights, dtype=object)
        return np.array([int(v + self.intercept * ONE > 0) for v in scores], dtype=np.int64)

    def update(self, sample: Sequence[int], label: int) -> None:
        if label not in (0, 1):
            raise ModelRevert("BadClassification", f"label {label}")
        if self.predict_one(sample) == label:
            return
        rate = self.learning_rate if label == 1 else -self.learning_rate
        new = [w + _tdiv(int(d) * rate, ONE) for w, d in zip(self.weights, sample)]
        for i, w in enumerate(new):
            if not _INT80_MIN <= w <= _INT80_MAX:
                raise ModelRevert("WeightOverflow", f"weight {i}")
        self.weights = new

    @classmethod
    def from_spec(cls, spec: Any) -> DensePerceptronTwin:
        return cls(list(spec.weights), int(spec.intercept), int(spec.learning_rate))

    @classmethod
    async def from_chain(cls, client: RpcClient, model: str, abi: ContractABI, block: int | str = "latest"
                         ) -> DensePerceptronTwin:
        (n,) = await _read(client, model, abi, [("nFeatures", ())], block)
        calls: list[tuple[str, tuple[Any, ...]]] = [("intercept", ()), ("learningRate", ())]
        calls += [("getWeights", (s, min(_READ_CHUNK, n - s))) for s in range(0, n, _READ_CHUNK)]
        res = await _read(client, model, abi, calls, block)
        weights = [int(w) for chunk in res[2:] for w in chunk]
        return cls(weights, int(res[0]), int(res[1]))


# ==================================================================================================
# Multinomial naive Bayes
# ==================================================================================================

_NB_FLOOR = 1 << 128


@dataclass
class NaiveBayesTwin:
    """The contract's floating running product: m * 2^-e with m kept in [2^128, 2^160) (NaiveBayes.sol)."""

    num_samples: list[int]
    totals: list[int]
    counts: np.ndarray  # (classes, vocabulary) int64: count_k[f]
    smoothing: int
    vocabulary_size: int

    @property
    def n_classes(self) -> int:
        return len(self.num_samples)

    def _check(self, sample: Sequence[int]) -> list[int]:
        out = [int(f) for f in sample]
        for f in out:
            if not 0 <= f < self.vocabulary_size:
                raise ModelRevert("FeatureOutOfRange", f"feature {f}, vocabulary {self.vocabulary_size}")
        return out

    def probability(self, sample: Sequence[int], c: int) -> tuple[int, int]:
        """(m, e) of class c exactly as the contract computes it; (0, 0) for a class without samples."""
        n = self.num_samples[c]
        if n == 0:
            return 0, 0
        alpha = self.smoothing
        denominator = self.totals[c] * ONE + alpha * self.vocabulary_size
        m, e = n, 0
        while m < _NB_FLOOR:
            m <<= 32
            e += 32
        for count in self.counts[c, list(sample)].tolist() if len(sample) else []:
            m = m * (count * ONE + alpha) // denominator
            while m < _NB_FLOOR:
                m <<= 32
                e += 32
        return m, e

    def predict_one(self, sample: Sequence[int]) -> int:
        sample = self._check(sample)
        best, best_m, best_e = 0, 0, 0
        for c in range(self.n_classes):
            m, e = self.probability(sample, c)
            if m == 0:
                continue
            if best_m == 0 or e < best_e or (e == best_e and m > best_m):
                best, best_m, best_e = c, m, e
        return best

    def predict(self, samples: Sequence[Sequence[int]]) -> np.ndarray:
        return np.array([self.predict_one(s) for s in samples], dtype=np.int64)

    def update(self, sample: Sequence[int], label: int) -> None:
        if not 0 <= label < self.n_classes:
            raise ModelRevert("BadClassification", f"label {label}")
        sample = self._check(sample)
        row = self.counts[label]
        for f in sample:  # a repeated index counts twice, as on chain
            if row[f] >= 2**32 - 1:
                raise ModelRevert("CountOverflow", f"feature {f}")
            row[f] += 1
        self.num_samples[label] += 1
        self.totals[label] += len(sample)

    @classmethod
    def from_spec(cls, spec: Any) -> NaiveBayesTwin:
        counts = np.zeros((len(spec.class_counts), spec.vocabulary_size), dtype=np.int64)
        for c, per_class in enumerate(spec.feature_counts):
            for f, n in per_class.items():
                counts[c, f] = n
        return cls(list(spec.class_counts), [int(counts[c].sum()) for c in range(len(spec.class_counts))], counts,
                   int(spec.smoothing), int(spec.vocabulary_size))

    @classmethod
    async def from_chain(cls, client: RpcClient, model: str, abi: ContractABI, block: int | str = "latest"
                         ) -> NaiveBayesTwin:
        num_samples, totals, alpha, v = await _read_class_state(client, model, abi, block, "smoothingFactor",
                                                                "vocabularySize")
        k = len(num_samples)
        groups = (v + 3) // 4
        calls = [("getCountWords", (g, s, min(_READ_CHUNK, groups - s)))
                 for g in range((k + 1) // 2) for s in range(0, groups, _READ_CHUNK)]
        words = await _read(client, model, abi, calls, block)
        counts = np.zeros((k + k % 2, groups * 4), dtype=np.int64)
        for (_, (g, s, n)), chunk in zip(calls, words):
            w = np.array([int(x) for x in chunk], dtype=object)
            for lane in range(8):  # lane 2 * (f - 4q) + (k - 2g), 32 bits
                counts[2 * g + (lane & 1), 4 * s + (lane >> 1):4 * (s + n):4] = \
                    ((w >> (32 * lane)) & 0xFFFFFFFF).astype(np.int64)
        return cls(list(num_samples), list(totals), counts[:k, :v].copy(), alpha, v)


async def _read_class_state(client: RpcClient, model: str, abi: ContractABI, block: int | str, *extra: str
                            ) -> tuple[list[int], list[int], int, int]:
    res = await _read(client, model, abi, [("getClassInfos", ()), *((name, ()) for name in extra)], block)
    (num_samples, second), a, b = res[0], res[1], res[2]
    return [int(x) for x in num_samples], [int(x) for x in second], int(a), int(b)


# ==================================================================================================
# Dense nearest centroid
# ==================================================================================================


@dataclass
class DenseNearestCentroidTwin:
    """argmin_k sum_j floor((d_j - c_kj)^2 / 1e9), ties to the lower class; running-mean update."""

    centroids: list[list[int]]
    data_counts: list[int]

    @property
    def n_features(self) -> int:
        return len(self.centroids[0])

    def distances(self, sample: Sequence[int]) -> list[int]:
        d = _dense_checked(sample, self.n_features)
        return [sum((v - c) ** 2 // ONE for v, c in zip(d, centroid)) for centroid in self.centroids]

    def predict_one(self, sample: Sequence[int]) -> int:
        dist = self.distances(sample)
        return dist.index(min(dist))

    def predict(self, samples: Sequence[Sequence[int]]) -> np.ndarray:
        if len(samples) == 0:
            return np.zeros(0, dtype=np.int64)
        x = np.array([_dense_checked(s, self.n_features) for s in samples], dtype=np.int64)
        c = np.array(self.centroids, dtype=np.int64)
        if np.abs(c).max() + np.abs(x).max() >= 3_000_000_000:  # squares could leave int64
            return np.array([self.predict_one(s) for s in samples], dtype=np.int64)
        dist = np.stack([((x - row) ** 2 // ONE).sum(axis=1) for row in c], axis=1)
        return dist.argmin(axis=1).astype(np.int64)  # argmin takes the first (lowest) class on ties

    def update(self, sample: Sequence[int], label: int) -> None:
        if not 0 <= label < len(self.centroids):
            raise ModelRevert("BadClassification", f"label {label}")
        d = _dense_checked(sample, self.n_features)
        n = self.data_counts[label]
        if n >= 2**64 - 1:
            raise ModelRevert("CountOverflow")
        self.centroids[label] = [_tdiv(c * n + v, n + 1) for c, v in zip(self.centroids[label], d)]
        self.data_counts[label] = n + 1

    @classmethod
    def from_spec(cls, spec: Any) -> DenseNearestCentroidTwin:
        return cls([list(c) for c in spec.centroids], list(spec.data_counts))

    @classmethod
    async def from_chain(cls, client: RpcClient, model: str, abi: ContractABI, block: int | str = "latest"
                         ) -> DenseNearestCentroidTwin:
        counts, n = await _read(client, model, abi, [("getDataCounts", ()), ("nFeatures", ())], block)
        calls = [("getCentroid", (k, s, min(_READ_CHUNK, n - s))) for k in range(len(counts))
                 for s in range(0, n, _READ_CHUNK)]
        res = await _read(client, model, abi, calls, block)
        centroids: list[list[int]] = [[] for _ in counts]
        for (_, (k, _s, _n)), chunk in zip(calls, res):
            centroids[k].extend(int(v) for v in chunk)
        return cls(centroids, [int(c) for c in counts])


# ==================================================================================================
# Sparse nearest centroid
# ==================================================================================================


@dataclass
class SparseNearestCentroidTwin:
    """Sums s_kj (x1e9), counts n_k and q_k = sum_j s_kj^2; exact comparison of
    A_k / n_k^2 with A_k = q_k + 1e18 * L * n_k^2 - 2e9 * n_k * T_k (SparseNearestCentroid.sol)."""

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
        num_samples, squares, v, _ = await _read_class_state(client, model, abi, block, "nFeatures", "numClasses")
        k = len(num_samples)
        groups = (v + 1) // 2
        calls = [("getSumWords", (g, s, min(_READ_CHUNK, groups - s)))
                 for g in range((k + 1) // 2) for s in range(0, groups, _READ_CHUNK)]
        words = await _read(client, model, abi, calls, block)
        sums = np.zeros((k + k % 2, groups * 2), dtype=np.uint64)
        for (_, (g, s, n)), chunk in zip(calls, words):
            w = np.array([int(x) for x in chunk], dtype=object)
            for lane in range(4):  # lane 2 * (j - 2q) + (k - 2g), 64 bits
                sums[2 * g + (lane & 1), 2 * s + (lane >> 1):2 * (s + n):2] = \
                    ((w >> (64 * lane)) & 0xFFFFFFFFFFFFFFFF).astype(np.uint64)
        return cls(sums[:k, :v].copy(), num_samples, squares)


# ==================================================================================================
# Dispatch
# ==================================================================================================


TWINS: dict[str, type] = {
    "SparsePerceptron": SparsePerceptronTwin,
    "DensePerceptron": DensePerceptronTwin,
    "NaiveBayes": NaiveBayesTwin,
    "DenseNearestCentroid": DenseNearestCentroidTwin,
    "SparseNearestCentroid": SparseNearestCentroidTwin,
}


async def twin_from_chain(client: RpcClient, system: Any, block: int | str = "latest") -> Twin:
    """The twin of `system`'s model (a `contracts.deploy.DeployedSystem`) with its state at `block`."""
    name = system.model_contract
    abi = system.abis[name]
    if name == "SparsePerceptron":
        return await SparsePerceptronTwin.from_chain(client, system.model, abi, system.n_features, block)
    if name not in TWINS:
        raise ValueError(f"no twin for model contract {name!r}; have {sorted(TWINS)}")
    twin: Twin = await TWINS[name].from_chain(client, system.model, abi, block)
    return twin


def twin_from_spec(spec: Any) -> Twin:
    """The twin of a model spec (`contracts.models`), i.e. of the model as it is right after deployment."""
    try:
        cls = TWINS[spec.contract]
    except KeyError:
        raise ValueError(f"no twin for model contract {spec.contract!r}") from None
    twin: Twin = cls.from_spec(spec)
    return twin
