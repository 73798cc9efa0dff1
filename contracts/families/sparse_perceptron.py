"""Sparse perceptron (SparsePerceptron.sol): binary, inputs are present-feature indices, a mistake
moves each listed feature's weight by the learning rate. The prediction market replays this one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..abi import ContractABI
from ..deploy import FIXED_POINT, SparsePerceptronSpec
from ..rpc import RpcClient
from .base import GasTable, ModelFamily
from .common import DEFAULT_LEARNING_RATE, INT80, READ_CHUNK, FileReader, ModelRevert, block_tag, file_real

MAX_DENSE_SPARSE_WEIGHTS = 1 << 24  # a sparse perceptron's weights are stored as one dense vector


@dataclass
class SparsePerceptronTwin:
    weights: np.ndarray  # int64 fixed point (object beyond int64); index = feature
    intercept: int
    learning_rate: int
    # Averaged mode (averaging > 0): `sums` holds u_i (Python integers) and `steps` the contract's C;
    # predictions test steps * (intercept + sum w) - sum u > 0, training uses w alone.
    averaging: int = 0
    sums: list[int] | None = None
    steps: int = 0

    def __post_init__(self) -> None:
        if self.averaging and self.sums is None:
            self.sums = [0] * len(self.weights)
            self.steps = self.steps or self.averaging

    def _train_score(self, sample: Sequence[int]) -> int:
        return self.intercept + sum(int(self.weights[i]) for i in sample)

    def scores(self, samples: Sequence[Sequence[int]]) -> np.ndarray:
        """intercept + sum of the weights of each sample's indices, exactly as the contract sums; in
        averaged mode the contract's averaged score, steps * that - sum of the sums (Python integers)."""
        if self.averaging:
            u = self.sums or []
            return np.array([self.steps * self._train_score(s) - sum(u[i] for i in s) for s in samples],
                            dtype=object)
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
        if self.averaging:
            return int(self.scores([sample])[0] > 0)
        return int(self._train_score(sample) > 0)

    def update(self, sample: Sequence[int], label: int) -> None:
        if self.averaging:
            self._update_averaged(sample, label)
            return
        if self.predict_one(sample) == label:
            return
        delta = self.learning_rate if label == 1 else -self.learning_rate
        for i in sample:  # a repeated index moves twice, as on chain
            self.weights[i] += delta

    def _update_averaged(self, sample: Sequence[int], label: int) -> None:
        if label not in (0, 1):
            raise ModelRevert("BadClassification", f"label {label}")
        for i in sample:
            if not 0 <= i < len(self.weights):
                raise ModelRevert("FeatureOutOfRange", f"index {i}")
        c = self.steps
        self.steps = c + 1
        if int(self._train_score(sample) > 0) == label:
            return
        delta = self.learning_rate if label == 1 else -self.learning_rate
        w = [int(v) for v in self.weights]
        u = list(self.sums or [])
        for i in sample:  # in input order, as on chain; a revert undoes the whole call
            w[i] += delta
            u[i] += delta * c
            if not INT80[0] <= w[i] <= INT80[1] or not -(2**175) <= u[i] < 2**175:
                self.steps = c
                raise ModelRevert("WeightOverflow", f"index {i}")
        fits = all(-(2**63) <= v < 2**63 for v in w)
        self.weights = np.array(w, dtype=np.int64 if fits else object)
        self.sums = u

    @classmethod
    async def from_chain(
        cls, client: RpcClient, model: str, abi: ContractABI, n_features: int, block: int | str = "latest"
    ) -> SparsePerceptronTwin:
        tag = block_tag(block)
        calls = [("eth_call", [{"to": model, "data": "0x" + abi.encode("getWeights", start,
                                                                          min(READ_CHUNK, n_features - start)).hex()},
                               tag])
                 for start in range(0, n_features, READ_CHUNK)]
        n_weight_calls = len(calls)
        calls.append(("eth_call", [{"to": model, "data": "0x" + abi.encode("intercept").hex()}, tag]))
        calls.append(("eth_call", [{"to": model, "data": "0x" + abi.encode("learningRate").hex()}, tag]))
        calls.append(("eth_call", [{"to": model, "data": "0x" + abi.encode("averaging").hex()}, tag]))
        calls.append(("eth_call", [{"to": model, "data": "0x" + abi.encode("steps").hex()}, tag]))
        results = await client.batch(calls)
        for r in results:
            if isinstance(r, Exception):
                raise r
        weights: list[int] = []
        for r in results[:n_weight_calls]:
            weights.extend(abi.fn("getWeights").decode(bytes.fromhex(r[2:])))
        intercept, lr, averaging, steps = (
            int(abi.fn(name).decode(bytes.fromhex(r[2:])))
            for name, r in zip(("intercept", "learningRate", "averaging", "steps"), results[n_weight_calls:]))
        sums: list[int] | None = None
        if averaging:
            chunks = [("eth_call", [{"to": model, "data": "0x" + abi.encode(
                "getSums", start, min(READ_CHUNK, n_features - start)).hex()}, tag])
                for start in range(0, n_features, READ_CHUNK)]
            sums = []
            for r in await client.batch(chunks):
                if isinstance(r, Exception):
                    raise r
                sums.extend(int(v) for v in abi.fn("getSums").decode(bytes.fromhex(r[2:])))
        # int80 on chain: beyond int64, keep exact Python integers (scores() handles object arrays).
        fits = all(-(2**63) <= w < 2**63 for w in weights)
        return cls(np.array(weights, dtype=np.int64 if fits else object), intercept, lr, averaging, sums, steps)

    @classmethod
    def from_spec(cls, spec: Any) -> SparsePerceptronTwin:
        fits = all(-(2**63) <= w < 2**63 for w in spec.weights)
        return cls(np.array(spec.weights, dtype=np.int64 if fits else object), int(spec.intercept),
                   int(spec.learning_rate), int(getattr(spec, "averaging", 0)))


class SparsePerceptron(ModelFamily):
    name = "sparse_perceptron"
    contract = "SparsePerceptron"
    spec_type = SparsePerceptronSpec
    twin_type = SparsePerceptronTwin
    file_types = ("sparse perceptron",)
    description = "binary perceptron on present-feature indices"
    aliases = ("sparse perceptron",)  # scenarios written before there was a choice of model
    binary_only = True
    # averaging: 0 = plain perceptron; N > 0 = averaged perceptron, the deployed weights counting as N
    # update calls (SparsePerceptron.sol). Not for the prediction market, which replays the plain rule.
    options = {"learning_rate": DEFAULT_LEARNING_RATE, "intercept": 0.0, "averaging": 0}
    mechanisms = ("stakeable", "points", "prediction_market")
    # Fitted by `python -m benchmarks.gas_limits --fit` to worst cases: the add covers a mispredicted
    # sample whose weights all sit in still-empty packed slots (a cold read plus a zero-to-nonzero
    # write, 22.1k, per index); refund and report the first claim of an address, and under Points
    # also the system's first (fresh counter slots); the market's add stores the sample (four
    # indices a slot) and the contributor's stake.
    gas: GasTable = {
        "stakeable": {
            "add": (99_750, 23_250, 0, 0),
            "refund": (80_000, 2_500, 0, 0),
            "report": (77_000, 2_500, 0, 0),
            "predict": (25_500, 2_500, 0, 0),
        },
        "points": {
            "add": (69_000, 23_250, 0, 0),
            "refund": (91_500, 2_500, 0, 0),
            "report": (99_000, 2_500, 0, 0),
            "predict": (25_500, 2_500, 0, 0),
        },
        "prediction_market": {
            "add": (203_000, 6_750, 0, 0),
            "collect": (48_500, 0, 0, 0),
        },
    }

    def train(self, ds: Any, rows: np.ndarray, options: Mapping[str, float], seed: int) -> SparsePerceptronSpec:
        """scikit-learn's Perceptron moves each present feature's weight by eta0 on a mistake, which is
        the contract's own rule, so its weights scale straight to fixed point. The intercept is not
        learned (the contract never updates it either)."""
        from sklearn.linear_model import Perceptron

        from orchestrator.datasets import to_csr

        learning_rate = float(options["learning_rate"])
        x = to_csr([ds.samples[i] for i in rows], ds.n_features)
        clf = Perceptron(eta0=learning_rate, fit_intercept=False, max_iter=50, tol=None, shuffle=True,
                         random_state=seed)
        clf.fit(x, ds.labels[rows])
        return SparsePerceptronSpec(weights=[int(round(w * FIXED_POINT)) for w in clf.coef_[0]],
                                    intercept=int(round(float(options["intercept"]) * FIXED_POINT)),
                                    learning_rate=int(round(learning_rate * FIXED_POINT)),
                                    averaging=int(options.get("averaging", 0)))

    def spec_from_json(self, data: Mapping[str, Any]) -> SparsePerceptronSpec:
        return SparsePerceptronSpec(weights=[int(w) for w in data["weights"]], intercept=int(data["intercept"]),
                                    learning_rate=int(data["learning_rate"]),
                                    classifications=tuple(data["classifications"]),  # type: ignore[arg-type]
                                    averaging=int(data.get("averaging", 0)))

    def spec_of_twin(self, twin: Any, classifications: Sequence[str]) -> SparsePerceptronSpec:
        if getattr(twin, "averaging", 0) and any(twin.sums or []):
            # A spec deploys fresh weights (sums 0), so an averaged model that has learned is written as
            # what it answers with: the mean weights w - u / C, rounded to the fixed point, as a plain
            # perceptron (its predictions can differ from the chain's only where a score rounds to 0).
            c = twin.steps
            mean = [(int(w) * c - u + c // 2) // c for w, u in zip(twin.weights, twin.sums or [])]
            return SparsePerceptronSpec(mean, twin.intercept, twin.learning_rate,
                                        tuple(classifications))  # type: ignore[arg-type]
        return SparsePerceptronSpec([int(w) for w in twin.weights], twin.intercept, twin.learning_rate,
                                    tuple(classifications), int(getattr(twin, "averaging", 0)))  # type: ignore[arg-type]

    def read_file(self, r: FileReader) -> SparsePerceptronSpec:
        classes = r.classifications()
        if len(classes) != 2:
            r.fail("classifications", f"a perceptron has 2 classes, got {len(classes)}")
        dense = r.get("weights", [], kind=list)
        sparse = r.get("sparseWeights", {}, kind=dict)
        indices = r.get("featureIndices", None, kind=(list, type(None)))
        pairs: dict[int, int] = {}
        if indices is not None:
            if len(indices) != len(dense) + len(sparse):
                r.fail("featureIndices", f"{len(indices)} indices for {len(dense) + len(sparse)} weights")
            if sparse:
                r.fail("featureIndices", "cannot be combined with sparseWeights")
            for i, (idx, w) in enumerate(zip(indices, dense)):
                pairs[r.index(f"featureIndices[{i}]", idx)] = r.real(f"weights[{i}]", w, INT80)
        else:
            for i, w in enumerate(dense):
                pairs[i] = r.real(f"weights[{i}]", w, INT80)
            for key, w in sparse.items():
                pairs[r.index(f"sparseWeights[{key!r}]", key)] = r.real(f"sparseWeights[{key!r}]", w, INT80)
        if not pairs:
            r.fail("weights", "no weights given")
        n = max(pairs) + 1
        if n > MAX_DENSE_SPARSE_WEIGHTS:
            r.fail("featureIndices" if indices is not None else "sparseWeights",
                   f"feature index {n - 1} is too large: the weights are deployed as one vector of at most "
                   f"{MAX_DENSE_SPARSE_WEIGHTS} values (reduce hashed indices modulo a feature count)")
        weights = [0] * n
        for idx, w in pairs.items():
            weights[idx] = w
        averaging = r.get("averaging", 0)
        if isinstance(averaging, bool) or not isinstance(averaging, int) or averaging < 0:
            r.fail("averaging", f"expected a whole number of updates >= 0 (0 = plain perceptron), got {averaging!r}")
        return SparsePerceptronSpec(
            weights=weights, intercept=r.real("intercept", r.get("intercept", 0), INT80),
            learning_rate=r.real("learningRate", r.get("learningRate", DEFAULT_LEARNING_RATE), INT80),
            classifications=(classes[0], classes[1]), averaging=averaging)

    def write_file(self, spec: Any) -> dict[str, Any]:
        out = {"type": self.file_types[0], "classifications": list(spec.classifications),
               "weights": [file_real(w) for w in spec.weights], "intercept": file_real(spec.intercept),
               "learningRate": file_real(spec.learning_rate)}
        if getattr(spec, "averaging", 0):  # only when set: plain files stay the reference's format
            out["averaging"] = spec.averaging
        return out

    async def twin_from_chain(self, client: RpcClient, system: Any, block: int | str = "latest") -> Any:
        # The contract does not store its width: the deployed system remembers it.
        return await SparsePerceptronTwin.from_chain(client, system.model, system.model_abi, system.n_features, block)

    async def width(self, client: RpcClient, model: str, abi: Any, tag: str) -> int | None:
        return None


FAMILY = SparsePerceptron()
