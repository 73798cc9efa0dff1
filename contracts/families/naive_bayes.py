"""Multinomial naive Bayes (NaiveBayes.sol): per class the sample count and each feature's count
(uint32, packed eight to a word); the prediction is the contract's floating running product."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..abi import ContractABI
from ..deploy import FIXED_POINT
from ..rpc import RpcClient
from .base import GasTable, ModelFamily
from .common import (
    DEFAULT_SMOOTHING,
    ONE,
    READ_CHUNK,
    UINT32_MAX,
    UINT64_MAX,
    FileReader,
    ModelRevert,
    ModelSpecError,
    check_classes,
    check_range,
    class_names,
    file_real,
    int_keys,
    packed_calls,
    read_class_state,
    read_views,
)


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


@dataclass(frozen=True)
class NaiveBayesSpec:
    """Per class the sample count and the count of each feature (sparse map feature -> count,
    uint32); smoothing x1e9 (1e9 = Laplace)."""

    class_counts: list[int]
    feature_counts: list[dict[int, int]]
    vocabulary_size: int
    smoothing: int = FIXED_POINT
    classifications: tuple[str, ...] = ("Negative", "Positive")
    contract: ClassVar[str] = "NaiveBayes"

    def __post_init__(self) -> None:
        k = len(self.class_counts)
        check_classes(self.classifications, k)
        if len(self.feature_counts) != k:
            raise ModelSpecError(f"feature_counts: {len(self.feature_counts)} classes, expected {k}")
        if not 0 < self.vocabulary_size < 2**40:
            raise ModelSpecError(f"vocabulary_size = {self.vocabulary_size} must be in [1, 2^40)")
        if not 0 < self.smoothing <= UINT64_MAX:
            raise ModelSpecError(f"smoothing = {self.smoothing} must be in [1, 2^64)")
        check_range("class_counts", self.class_counts, 0, UINT64_MAX)
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
        return packed_calls(abi, "initializeCounts", naive_bayes_words(self.feature_counts), gas_limit, "counts")


_NB_FLOOR = 1 << 128


@dataclass
class NaiveBayesTwin:
    """The contract's floating running product: m * 2^-e with m kept in [2^128, 2^160)."""

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
        num_samples, totals, alpha, v = await read_class_state(client, model, abi, block, "smoothingFactor",
                                                               "vocabularySize")
        k = len(num_samples)
        groups = (v + 3) // 4
        calls = [("getCountWords", (g, s, min(READ_CHUNK, groups - s)))
                 for g in range((k + 1) // 2) for s in range(0, groups, READ_CHUNK)]
        words = await read_views(client, model, abi, calls, block)
        counts = np.zeros((k + k % 2, groups * 4), dtype=np.int64)
        for (_, (g, s, n)), chunk in zip(calls, words):
            w = np.array([int(x) for x in chunk], dtype=object)
            for lane in range(8):  # lane 2 * (f - 4q) + (k - 2g), 32 bits
                counts[2 * g + (lane & 1), 4 * s + (lane >> 1):4 * (s + n):4] = \
                    ((w >> (32 * lane)) & 0xFFFFFFFF).astype(np.int64)
        return cls(list(num_samples), list(totals), counts[:k, :v].copy(), alpha, v)


class NaiveBayes(ModelFamily):
    name = "naive_bayes"
    contract = "NaiveBayes"
    spec_type = NaiveBayesSpec
    twin_type = NaiveBayesTwin
    file_types = ("naive bayes",)
    description = "multinomial naive Bayes over present-feature indices, two or more classes"
    options = {"smoothing": DEFAULT_SMOOTHING}
    # Fitted by `python -m benchmarks.gas_limits --fit` to the worst cases (anvil 1.7.1, optimizer on).
    # The add writes per index whatever the class count; refund, report and predict read each
    # class's counters and its count at every index.
    gas: GasTable = {
        "stakeable": {
            "add": (82_000, 22_750, 0, 0),
            "refund": (80_250, 250, 3_500, 1_500),
            "report": (78_500, 250, 3_500, 1_500),
            "predict": (27_750, 250, 3_500, 1_500),
        },
        "points": {
            "add": (74_500, 22_750, 0, 0),
            "refund": (93_750, 250, 3_500, 1_500),
            "report": (100_500, 250, 3_500, 1_500),
            "predict": (27_750, 250, 3_500, 1_500),
        },
    }

    def train(self, ds: Any, rows: np.ndarray, options: Mapping[str, float], seed: int) -> NaiveBayesSpec:
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
        return NaiveBayesSpec(class_counts=class_counts, feature_counts=feature_counts,
                              vocabulary_size=ds.n_features,
                              smoothing=int(round(float(options["smoothing"]) * FIXED_POINT)),
                              classifications=class_names(ds))

    def spec_from_json(self, data: Mapping[str, Any]) -> NaiveBayesSpec:
        return NaiveBayesSpec(class_counts=[int(n) for n in data["class_counts"]],
                              feature_counts=int_keys(data["feature_counts"]),
                              vocabulary_size=int(data["vocabulary_size"]), smoothing=int(data["smoothing"]),
                              classifications=tuple(data["classifications"]))

    def spec_of_twin(self, twin: Any, classifications: Sequence[str]) -> NaiveBayesSpec:
        counts = [{int(f): int(row[f]) for f in np.flatnonzero(row)} for row in twin.counts]
        return NaiveBayesSpec(list(twin.num_samples), counts, twin.vocabulary_size, twin.smoothing,
                              tuple(classifications))

    def read_file(self, r: FileReader) -> NaiveBayesSpec:
        classes = r.classifications()
        class_counts = [r.count(f"classCounts[{i}]", c) for i, c in enumerate(r.get("classCounts", kind=list))]
        if len(class_counts) != len(classes):
            r.fail("classCounts", f"{len(class_counts)} counts for {len(classes)} classes")
        raw = r.get("featureCounts", kind=list)
        vocabulary = r.count("totalNumFeatures", r.get("totalNumFeatures"))
        if len(raw) != len(classes):
            r.fail("featureCounts", f"{len(raw)} classes, expected {len(classes)}")
        feature_counts: list[dict[int, int]] = []
        for c, pairs in enumerate(raw):
            counts: dict[int, int] = {}
            if not isinstance(pairs, list):
                r.fail(f"featureCounts[{c}]", "expected a list of [index, count] pairs")
            for i, pair in enumerate(pairs):
                where = f"featureCounts[{c}][{i}]"
                if not isinstance(pair, list) or len(pair) != 2:
                    r.fail(where, f"expected an [index, count] pair, got {pair!r}")
                idx = r.index(where, pair[0])
                if idx >= vocabulary:
                    r.fail(where, f"feature index {idx} is not below totalNumFeatures ({vocabulary})")
                counts[idx] = counts.get(idx, 0) + r.count(where, pair[1])
            feature_counts.append(counts)
        smoothing = r.real("smoothingFactor", r.get("smoothingFactor", DEFAULT_SMOOTHING))
        return NaiveBayesSpec(class_counts=class_counts, feature_counts=feature_counts, vocabulary_size=vocabulary,
                              smoothing=smoothing, classifications=classes)

    def write_file(self, spec: Any) -> dict[str, Any]:
        return {"type": self.file_types[0], "classifications": list(spec.classifications),
                "classCounts": list(spec.class_counts),
                "featureCounts": [[[j, n] for j, n in sorted(c.items()) if n] for c in spec.feature_counts],
                "totalNumFeatures": spec.vocabulary_size, "smoothingFactor": file_real(spec.smoothing)}

    async def width(self, client: RpcClient, model: str, abi: Any, tag: str) -> int | None:
        return int(abi.fn("vocabularySize").decode(await client.eth_call(model, abi.encode("vocabularySize"), tag)))


FAMILY = NaiveBayes()
