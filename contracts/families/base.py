"""What a model family is: one object that knows a model contract end to end.

A family bundles the spec the deployer takes, the exact off-chain twin, the gas limits of the
calls agents make to it (per mechanism and operation), the initial training and the model-file
format. Everything that used to branch on the model type asks the family instead
(`contracts.families.registry`), so a new family is one module plus its registration.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from ..rpc import RpcClient
from .common import FileReader

# (fixed, per index, per class, per index and class): gas of one call is at most
# fixed + per_index * n + per_class * k + per_both * n * k before the margin; n is the number of
# feature indices (or the dense dimension), k the number of classes (at least 2).
GasParts = tuple[int, int, int, int]
GasTable = Mapping[str, Mapping[str, GasParts]]  # mechanism -> operation -> parts

MECHANISMS = ("stakeable", "points", "prediction_market")
# Operations agents send: through the trainer (add, refund, report, predict) or to the market
# (add = its addData, collect).
OPERATIONS = ("add", "refund", "report", "predict", "collect")


class ModelFamily(ABC):
    """One model family. Subclasses set the class variables and implement the abstract methods;
    the registry holds one instance per family."""

    name: ClassVar[str]  # the one spelling scenarios use (`model.type`)
    contract: ClassVar[str]  # the Solidity contract (contracts/src/<contract>.sol)
    spec_type: ClassVar[type]
    twin_type: ClassVar[type]
    file_types: ClassVar[tuple[str, ...]]  # model-file "type" values, the one written first
    description: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()  # older scenario spellings still accepted
    binary_only: ClassVar[bool] = False  # one weight vector: two classes only
    dense: ClassVar[bool] = False  # takes unit-norm fixed-point vectors, not present-feature indices
    options: ClassVar[Mapping[str, float]] = {}  # scenario `model` options it takes, with defaults
    gas: ClassVar[GasTable]
    gas_margin: ClassVar[float] = 1.25
    # Mechanisms whose contracts can drive this model (the prediction market replays one model).
    mechanisms: ClassVar[tuple[str, ...]] = ("stakeable", "points")

    # ---- training and specs ----------------------------------------------------------------------

    @abstractmethod
    def train(self, ds: Any, rows: np.ndarray, options: Mapping[str, float], seed: int) -> Any:
        """The initial model trained on `rows` of `ds` (a `orchestrator.datasets.Dataset` already in
        this family's input form), as this family's spec."""

    @abstractmethod
    def spec_from_json(self, data: Mapping[str, Any]) -> Any:
        """The spec from `dataclasses.asdict(spec)` after a JSON round trip (model_initial.json)."""

    @abstractmethod
    def spec_of_twin(self, twin: Any, classifications: Sequence[str]) -> Any:
        """The model a twin holds, as a spec (class names given: twins do not keep them)."""

    # ---- model files ------------------------------------------------------------------------------

    @abstractmethod
    def read_file(self, r: FileReader) -> Any:
        """The spec from a parsed model file; errors through `r.fail(field, problem)`."""

    @abstractmethod
    def write_file(self, spec: Any) -> dict[str, Any]:
        """The reference's JSON form of a spec (fixed point back to real numbers)."""

    # ---- twins ------------------------------------------------------------------------------------

    def twin_from_spec(self, spec: Any) -> Any:
        return self.twin_type.from_spec(spec)

    async def twin_from_chain(self, client: RpcClient, system: Any, block: int | str = "latest") -> Any:
        """The twin of `system`'s model (a `DeployedSystem` or `DeployedMarket`) at `block`."""
        return await self.twin_type.from_chain(client, system.model, system.model_abi, block)

    async def width(self, client: RpcClient, model: str, abi: Any, tag: str) -> int | None:
        """The deployed model's input width, read from the chain; None if the contract does not store it."""
        return int(abi.fn("nFeatures").decode(await client.eth_call(model, abi.encode("nFeatures"), tag)))

    # ---- gas --------------------------------------------------------------------------------------

    def gas_limit(self, operation: str, n_indices: int, n_classes: int = 2, mechanism: str | None = None) -> int:
        """Gas limit of one call. Without `mechanism`, or for a mechanism not calibrated here, the
        largest over the calibrated mechanisms: always enough, at the price of some block space."""
        table = self.gas
        mechs = [mechanism] if mechanism in table else list(table)
        parts = [table[m][operation] for m in mechs if operation in table[m]]
        if not parts:
            raise ValueError(f"model family {self.name!r}: no gas limit for operation {operation!r}"
                             + (f" under {mechanism!r}" if mechanism else "")
                             + f"; calibrated: {sorted({op for m in table.values() for op in m})}")
        n, k = max(n_indices, 1), max(n_classes, 2)
        return max(int((f + p * n + c * k + b * n * k) * self.gas_margin) for f, p, c, b in parts)

    def __repr__(self) -> str:
        return f"<model family {self.name} ({self.contract})>"
