"""Exact off-chain twins of the on-chain models: same integer arithmetic, same rounding.

They evaluate the model held by the chain at any block quickly (one bulk read, then numpy), and
let tests check the contracts bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .abi import ContractABI
from .rpc import RpcClient

_READ_CHUNK = 4_000  # weights per eth_call: keeps each view call far below any node's call gas cap


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
