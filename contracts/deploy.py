"""Deploy a full DCAI system (data handler, incentive mechanism, model, trainer) and verify it.

Model weights are written in chunks sized from the block gas limit, ownership of the three
components moves to the trainer, and `verify_system` checks it before anyone relies on it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from eth_abi import encode as abi_encode
from eth_utils import to_checksum_address

from .abi import ContractABI, merge_errors
from .compiler import CompileResult
from .rpc import RpcClient
from .transact import Transactor

FIXED_POINT = 10**9
# Gas per weight for chunked initialisation: a third of a fresh slot (22.1k) plus its calldata word.
_GAS_PER_WEIGHT = 8_000
_CHUNK_BUDGET = 0.5  # share of the block gas limit one chunk may use: leaves room for other traffic


class DeploymentError(RuntimeError):
    pass


class ModelSpec(Protocol):
    """What the deployer needs to know about a model: its contract, constructor, chunked set-up."""

    contract: ClassVar[str]

    @property
    def n_features(self) -> int: ...

    def constructor(self) -> tuple[list[str], list[Any]]: ...

    def init_calls(self, abi: ContractABI, gas_limit: int) -> list[tuple[str, bytes]]:
        """(description, calldata) of each initialisation transaction, sized for the gas limit."""
        ...


class IncentiveSpec(Protocol):
    contract: ClassVar[str]

    def constructor(self) -> tuple[list[str], list[Any]]: ...


@dataclass(frozen=True)
class SparsePerceptronSpec:
    weights: list[int]  # fixed point (x1e9), index = feature
    intercept: int = 0
    learning_rate: int = FIXED_POINT // 2
    classifications: tuple[str, str] = ("Negative", "Positive")
    # 0: plain perceptron; > 0: averaged perceptron, the deployed weights counting as this many
    # update calls (SparsePerceptron.sol explains the mode).
    averaging: int = 0
    contract: ClassVar[str] = "SparsePerceptron"

    def __post_init__(self) -> None:
        if not isinstance(self.averaging, int) or isinstance(self.averaging, bool) or self.averaging < 0:
            raise DeploymentError(f"averaging: expected a whole number >= 0, got {self.averaging!r}")

    @property
    def n_features(self) -> int:
        return len(self.weights)

    def constructor(self) -> tuple[list[str], list[Any]]:
        return (["string[]", "int80", "int80", "uint256", "uint256"],
                [list(self.classifications), self.intercept, self.learning_rate, self.n_features, self.averaging])

    def init_calls(self, abi: ContractABI, gas_limit: int) -> list[tuple[str, bytes]]:
        size = chunk_size(gas_limit, self.n_features)
        if self.averaging:  # one slot per weight instead of one per three
            size = max(3, size // 9 * 3)
        return [
            (f"initialise weights {start}..{min(start + size, self.n_features) - 1}",
             abi.encode("initializeWeights", start, self.weights[start:start + size]))
            for start in range(0, self.n_features, size)
        ]


@dataclass(frozen=True)
class StakeableSpec:
    refund_wait_s: int
    owner_claim_wait_s: int
    any_address_claim_wait_s: int
    cost_weight: int
    contract: ClassVar[str] = "Stakeable"

    def constructor(self) -> tuple[list[str], list[Any]]:
        return (["uint256", "uint256", "uint256", "uint256"],
                [self.refund_wait_s, self.owner_claim_wait_s, self.any_address_claim_wait_s, self.cost_weight])


@dataclass
class DeployedSystem:
    trainer: str
    data_handler: str
    incentive: str
    model: str
    deployer: str
    block: int
    n_features: int
    gas_used: int
    transactions: int
    abis: dict[str, ContractABI] = field(repr=False, default_factory=dict)
    model_contract: str = "SparsePerceptron"
    incentive_contract: str = "Stakeable"

    @property
    def model_abi(self) -> ContractABI:
        return self.abis[self.model_contract]

    @property
    def incentive_abi(self) -> ContractABI:
        return self.abis[self.incentive_contract]

    @property
    def errors(self) -> dict[bytes, tuple[str, list[str]]]:
        return merge_errors(*self.abis.values())

    def addresses(self) -> dict[str, str]:
        return {"trainer": self.trainer, "data_handler": self.data_handler,
                "incentive": self.incentive, "model": self.model}


def abis_of(compiled: CompileResult) -> dict[str, ContractABI]:
    return {name: ContractABI(a.abi) for name, a in compiled.artifacts.items()}


def chunk_size(gas_limit: int, n: int) -> int:
    size = int(gas_limit * _CHUNK_BUDGET) // _GAS_PER_WEIGHT
    size -= size % 3  # whole packed slots
    if size < 3:
        raise DeploymentError(f"block gas limit {gas_limit} is too small to initialise weights")
    return min(size, n + (-n % 3))


def _constructor(compiled: CompileResult, name: str, types: list[str], args: list[Any]) -> bytes:
    return compiled[name].bytecode + (abi_encode(types, args) if types else b"")


def _created(receipt: dict[str, Any], what: str) -> str:
    addr = receipt.get("contractAddress")
    if not addr:
        raise DeploymentError(f"{what}: receipt has no contract address")
    return to_checksum_address(addr)


async def deploy_system(
    client: RpcClient,
    tx: Transactor,
    compiled: CompileResult,
    model: ModelSpec,
    incentive: IncentiveSpec,
    *,
    gas_limit: int,
    name: str = "dcai-arena",
    description: str = "",
    encoder: str = "none",
) -> DeployedSystem:
    abis = abis_of(compiled)
    gas_before, sent_before = tx.gas_used, tx.sent

    r = await tx.send(None, _constructor(compiled, "DataHandler", [], []), what="deploy DataHandler")
    data_handler = _created(r, "DataHandler")
    r = await tx.send(None, _constructor(compiled, incentive.contract, *incentive.constructor()),
                      what=f"deploy {incentive.contract}")
    incentive_addr = _created(r, incentive.contract)
    r = await tx.send(None, _constructor(compiled, model.contract, *model.constructor()),
                      what=f"deploy {model.contract}")
    model_addr = _created(r, model.contract)
    # Encoding a large model's chunks takes seconds: off the event loop, which must stay free to
    # hear Ctrl-C during set-up.
    for what, calldata in await asyncio.to_thread(model.init_calls, abis[model.contract], gas_limit):
        await tx.send(model_addr, calldata, what=what)

    r = await tx.send(
        None,
        _constructor(
            compiled, "CollaborativeTrainer",
            ["string", "string", "string", "address", "address", "address"],
            [name, description, encoder, data_handler, incentive_addr, model_addr],
        ),
        what="deploy CollaborativeTrainer",
    )
    trainer = _created(r, "CollaborativeTrainer")
    block = int(r["blockNumber"], 16)

    for addr, abi_name in ((data_handler, "DataHandler"), (incentive_addr, incentive.contract),
                           (model_addr, model.contract)):
        await tx.send(addr, abis[abi_name].encode("transferOwnership", trainer), what=f"transfer {abi_name}")

    system = DeployedSystem(
        trainer=trainer,
        data_handler=data_handler,
        incentive=incentive_addr,
        model=model_addr,
        deployer=tx.account.address,
        block=block,
        n_features=model.n_features,
        gas_used=tx.gas_used - gas_before,
        transactions=tx.sent - sent_before,
        abis=abis,
        model_contract=model.contract,
        incentive_contract=incentive.contract,
    )
    await verify_system(client, system)
    return system


async def verify_system(client: RpcClient, system: DeployedSystem) -> None:
    """Refuse a trainer whose components it does not own or whose wiring differs."""
    trainer = system.abis["CollaborativeTrainer"]
    wiring = {
        "dataHandler": system.data_handler,
        "incentiveMechanism": system.incentive,
        "classifier": system.model,
    }
    for getter, expected in wiring.items():
        got = to_checksum_address(trainer.fn(getter).decode(await client.eth_call(system.trainer, trainer.encode(getter))))
        if got != expected:
            raise DeploymentError(f"trainer.{getter} is {got}, expected {expected}")
    owner_fn = system.abis["DataHandler"].fn("owner")
    for label, addr in (("data handler", system.data_handler), ("incentive mechanism", system.incentive),
                        ("model", system.model)):
        owner = to_checksum_address(owner_fn.decode(await client.eth_call(addr, owner_fn.encode())))
        if owner != system.trainer:
            raise DeploymentError(f"{label} at {addr} is owned by {owner}, not by the trainer {system.trainer}")
