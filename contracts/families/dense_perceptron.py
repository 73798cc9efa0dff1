"""Dense perceptron (DensePerceptron.sol): binary, inputs are unit-norm fixed-point vectors,
score = intercept * 1e9 + sum w_i d_i; a mistake moves w_i by trunc(d_i * rate / 1e9)."""

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
    DEFAULT_LEARNING_RATE,
    INT80,
    ONE,
    READ_CHUNK,
    FileReader,
    ModelRevert,
    ModelSpecError,
    budget_items,
    check_classes,
    check_range,
    dense_checked,
    file_real,
    read_views,
    tdiv,
)

_GAS_PER_WEIGHT = 8_000  # int80, three per slot


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
        check_classes(self.classifications, 2)
        check_range("weights", self.weights, *INT80)
        check_range("intercept", [self.intercept], *INT80)
        check_range("learning_rate", [self.learning_rate], *INT80)

    @property
    def n_features(self) -> int:
        return len(self.weights)

    def constructor(self) -> tuple[list[str], list[Any]]:
        return (["string[]", "int80", "int80", "uint256"],
                [list(self.classifications), self.intercept, self.learning_rate, self.n_features])

    def init_calls(self, abi: ContractABI, gas_limit: int) -> list[tuple[str, bytes]]:
        size = budget_items(gas_limit, _GAS_PER_WEIGHT, 3)
        return [(f"initialise weights {s}..{min(s + size, self.n_features) - 1}",
                 abi.encode("initializeWeights", s, self.weights[s:s + size]))
                for s in range(0, self.n_features, size)]


@dataclass
class DensePerceptronTwin:
    weights: list[int]
    intercept: int
    learning_rate: int

    @property
    def n_features(self) -> int:
        return len(self.weights)

    def score(self, sample: Sequence[int]) -> int:
        d = dense_checked(sample, self.n_features)
        return self.intercept * ONE + sum(w * v for w, v in zip(self.weights, d))

    def predict_one(self, sample: Sequence[int]) -> int:
        return int(self.score(sample) > 0)

    def predict(self, samples: Sequence[Sequence[int]]) -> np.ndarray:
        if len(samples) == 0:
            return np.zeros(0, dtype=np.int64)
        rows = [dense_checked(s, self.n_features) for s in samples]
        # Python integers through numpy object arrays: products reach 2^110, beyond int64.
        scores = np.array(rows, dtype=object) @ np.array(self.weights, dtype=object)
        return np.array([int(v + self.intercept * ONE > 0) for v in scores], dtype=np.int64)

    def update(self, sample: Sequence[int], label: int) -> None:
        if label not in (0, 1):
            raise ModelRevert("BadClassification", f"label {label}")
        if self.predict_one(sample) == label:
            return
        rate = self.learning_rate if label == 1 else -self.learning_rate
        new = [w + tdiv(int(d) * rate, ONE) for w, d in zip(self.weights, sample)]
        for i, w in enumerate(new):
            if not INT80[0] <= w <= INT80[1]:
                raise ModelRevert("WeightOverflow", f"weight {i}")
        self.weights = new

    @classmethod
    def from_spec(cls, spec: Any) -> DensePerceptronTwin:
        return cls(list(spec.weights), int(spec.intercept), int(spec.learning_rate))

    @classmethod
    async def from_chain(cls, client: RpcClient, model: str, abi: ContractABI, block: int | str = "latest"
                         ) -> DensePerceptronTwin:
        (n,) = await read_views(client, model, abi, [("nFeatures", ())], block)
        calls: list[tuple[str, tuple[Any, ...]]] = [("intercept", ()), ("learningRate", ())]
        calls += [("getWeights", (s, min(READ_CHUNK, n - s))) for s in range(0, n, READ_CHUNK)]
        res = await read_views(client, model, abi, calls, block)
        weights = [int(w) for chunk in res[2:] for w in chunk]
        return cls(weights, int(res[0]), int(res[1]))


class DensePerceptron(ModelFamily):
    name = "dense_perceptron"
    contract = "DensePerceptron"
    spec_type = DensePerceptronSpec
    twin_type = DensePerceptronTwin
    file_types = ("dense perceptron", "perceptron")  # the reference's files say "perceptron"
    description = "binary perceptron on dense unit-norm vectors"
    binary_only = True
    dense = True
    options = {"learning_rate": DEFAULT_LEARNING_RATE, "intercept": 0.0}
    # Fitted by `python -m benchmarks.gas_limits --fit` to the worst cases (anvil 1.7.1, optimizer on):
    # every component is read, and on a mistake written.
    gas: GasTable = {
        "stakeable": {
            "add": (98_750, 8_750, 0, 0),
            "refund": (80_250, 1_500, 0, 0),
            "report": (77_250, 1_500, 0, 0),
            "predict": (25_750, 1_500, 0, 0),
        },
        "points": {
            "add": (68_000, 8_750, 0, 0),
            "refund": (91_750, 1_500, 0, 0),
            "report": (99_250, 1_500, 0, 0),
            "predict": (25_750, 1_500, 0, 0),
        },
    }

    def train(self, ds: Any, rows: np.ndarray, options: Mapping[str, float], seed: int) -> DensePerceptronSpec:
        """scikit-learn's Perceptron rule on dense inputs: on a mistake w += eta0 * x, with x the
        fixed-point vector / 1e9, which the contract computes as trunc(d_i * rate / 1e9); the constant
        last component of every sample plays the intercept's part."""
        from sklearn.linear_model import Perceptron

        learning_rate = float(options["learning_rate"])
        x = np.array([ds.samples[i] for i in rows], dtype=np.float64) / FIXED_POINT
        clf = Perceptron(eta0=learning_rate, fit_intercept=False, max_iter=50, tol=None, shuffle=True,
                         random_state=seed)
        clf.fit(x, ds.labels[rows])
        return DensePerceptronSpec(weights=[int(round(w * FIXED_POINT)) for w in clf.coef_[0]],
                                   intercept=int(round(float(options["intercept"]) * FIXED_POINT)),
                                   learning_rate=int(round(learning_rate * FIXED_POINT)))

    def spec_from_json(self, data: Mapping[str, Any]) -> DensePerceptronSpec:
        return DensePerceptronSpec(weights=[int(w) for w in data["weights"]], intercept=int(data["intercept"]),
                                   learning_rate=int(data["learning_rate"]),
                                   classifications=tuple(data["classifications"]))  # type: ignore[arg-type]

    def spec_of_twin(self, twin: Any, classifications: Sequence[str]) -> DensePerceptronSpec:
        return DensePerceptronSpec(list(twin.weights), twin.intercept, twin.learning_rate,
                                   tuple(classifications))  # type: ignore[arg-type]

    def read_file(self, r: FileReader) -> DensePerceptronSpec:
        classes = r.classifications()
        if len(classes) != 2:
            r.fail("classifications", f"a perceptron has 2 classes, got {len(classes)}")
        weights = [r.real(f"weights[{i}]", w, INT80) for i, w in enumerate(r.get("weights", kind=list))]
        indices = r.get("featureIndices", None, kind=(list, type(None)))
        if indices is not None and list(indices) != list(range(len(weights))):
            r.fail("featureIndices", "a dense perceptron takes the whole vector: feature indices must be 0..n-1")
        return DensePerceptronSpec(
            weights=weights, intercept=r.real("intercept", r.get("intercept", 0), INT80),
            learning_rate=r.real("learningRate", r.get("learningRate", DEFAULT_LEARNING_RATE), INT80),
            classifications=(classes[0], classes[1]))

    def write_file(self, spec: Any) -> dict[str, Any]:
        return {"type": self.file_types[0], "classifications": list(spec.classifications),
                "weights": [file_real(w) for w in spec.weights], "intercept": file_real(spec.intercept),
                "learningRate": file_real(spec.learning_rate)}


FAMILY = DensePerceptron()
