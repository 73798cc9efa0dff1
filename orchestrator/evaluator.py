"""Accuracy of the on-chain model on the held-out test set, at a given block.

The model's state at that block is read in one batch and evaluated with the exact twin; a few
samples are also predicted by the contract itself at that block, and any disagreement is recorded
(it would mean the twin is wrong).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from contracts.abi import ContractABI
from contracts.deploy import DeployedSystem
from contracts.rpc import RpcClient
from contracts.twins import Twin, twin_from_chain


@dataclass
class ModelRecord:
    block: int
    timestamp: int
    accuracy: float
    accuracy_class0: float
    accuracy_class1: float
    n_test: int
    spot_checks: int
    spot_mismatches: int
    # Every class's accuracy (index = class; NaN for a class absent from the test set): the two
    # columns above only cover a binary model.
    accuracy_per_class: list[float]


MODEL_COLUMNS = [f.name for f in fields(ModelRecord)]


class Evaluator:
    def __init__(self, client: RpcClient, system: DeployedSystem, samples: list[tuple[int, ...]],
                 labels: np.ndarray, spot_checks: int = 5):
        self.client = client
        self.system = system
        self.samples = samples
        self.labels = labels
        self.spot = list(range(min(spot_checks, len(samples))))
        self.model_abi: ContractABI = system.model_abi
        self.records: list[ModelRecord] = []

    async def twin_at(self, block: int) -> Twin:
        return await twin_from_chain(self.client, self.system, block)

    async def evaluate(self, block: int, timestamp: int) -> ModelRecord:
        twin = await self.twin_at(block)
        pred = twin.predict(self.samples)
        correct = pred == self.labels
        n_classes = max(2, int(self.labels.max()) + 1 if len(self.labels) else 2)
        per_class = [float(correct[self.labels == c].mean()) if (self.labels == c).any() else float("nan")
                     for c in range(n_classes)]
        mismatches = 0
        if self.spot:
            fn = self.model_abi.fn("predict")
            results = await self.client.batch([
                ("eth_call", [{"to": self.system.model, "data": "0x" + fn.encode(list(self.samples[i])).hex()},
                              hex(block)])
                for i in self.spot
            ])
            for i, r in zip(self.spot, results):
                if isinstance(r, Exception) or fn.decode(bytes.fromhex(r[2:])) != int(pred[i]):
                    mismatches += 1
        rec = ModelRecord(block, timestamp, float(correct.mean()), per_class[0], per_class[1],
                          len(self.samples), len(self.spot), mismatches, per_class)
        self.records.append(rec)
        return rec
