"""Incentive mechanisms beyond Stakeable: deployer specs and the prediction market's driver.

* `PointsSpec` plugs into `deploy.deploy_system(..., incentive=PointsSpec(...))` like `StakeableSpec`.
* The prediction market is its own entry point (`PredictionMarket.sol`), not a mechanism behind
  `CollaborativeTrainer`: `deploy_market` deploys a model and a market and hands the model to the
  market; `MarketDriver` runs a round (commit, draw, reveal, participate, end, reveal, reward passes,
  collect); `MarketTwin` computes the round's outcome off-chain with the contract's exact integer
  arithmetic, so tests and analyses can check every balance to the wei.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, ClassVar

from eth_abi import encode as abi_encode
from eth_utils import to_checksum_address

from .abi import ContractABI, decode_revert, merge_errors
from .compiler import CompileResult
from .deploy import DeploymentError, ModelSpec, abis_of
from .rpc import RpcClient, RpcError
from .signing import keccak256
from .transact import TransactionFailed, Transactor

SECONDS_PER_DAY = 86_400


# ==================================================================================================
# Points
# ==================================================================================================


@dataclass(frozen=True)
class PointsSpec:
    """Gamification: no deposit; validation earns a point, reports block a validation (see Points.sol)."""

    refund_wait_s: int
    owner_claim_wait_s: int
    any_address_claim_wait_s: int
    contract: ClassVar[str] = "Points"

    def constructor(self) -> tuple[list[str], list[Any]]:
        return (["uint256", "uint256", "uint256"],
                [self.refund_wait_s, self.owner_claim_wait_s, self.any_address_claim_wait_s])


# Badge bits of Points.badgesOf
BADGE_FIRST_CONTRIBUTION = 1 << 0
BADGE_VALIDATED_10 = 1 << 1
BADGE_VALIDATED_100 = 1 << 2
BADGE_VALIDATED_1000 = 1 << 3
BADGE_FIRST_REPORT = 1 << 4


def expected_badges(num_valid: int, num_reports: int) -> int:
    """The badge mask Points.badgesOf computes from the two counters."""
    mask = 0
    for threshold, bit in ((1, BADGE_FIRST_CONTRIBUTION), (10, BADGE_VALIDATED_10), (100, BADGE_VALIDATED_100),
                           (1000, BADGE_VALIDATED_1000)):
        if num_valid >= threshold:
            mask |= bit
    if num_reports >= 1:
        mask |= BADGE_FIRST_REPORT
    return mask


# ==================================================================================================
# Prediction market: parameters, test-set commitment
# ==================================================================================================


class Phase(IntEnum):
    NONE = 0
    INITIALIZATION = 1
    PARTICIPATION = 2
    REVEAL_TEST_SET = 3
    REWARD = 4
    COLLECT = 5


LATE_CLAIM_WAIT_S = 7 * SECONDS_PER_DAY

# Measured upper bounds of one visit in processContributions: a fixed part, a part per feature of the
# contribution (a read of the starting model and of the overlay, a write of the overlay), and a part per
# test sample whose margin moves (sample slot read and write, posting read). A contribution moves at
# most every test entry once (its features are distinct, and so are a sample's), so one visit costs at
# most VISIT_GAS_FIXED + maxDataLength * VISIT_GAS_PER_FEATURE + maxTestEntries * VISIT_GAS_PER_ENTRY.
VISIT_GAS_FIXED = 150_000
VISIT_GAS_PER_FEATURE = 40_000  # measured about 30k (a fresh overlay slot is 22.1k of it)
VISIT_GAS_PER_ENTRY = 8_000  # measured about 7.1k


def safe_max_test_entries(gas_limit: int, max_data_length: int, share: float = 0.5) -> int:
    """The largest maxTestEntries for which one contribution's visit fits `share` of a block."""
    budget = int(gas_limit * share) - VISIT_GAS_FIXED - max_data_length * VISIT_GAS_PER_FEATURE
    if budget < VISIT_GAS_PER_ENTRY:
        raise ValueError("block gas limit too small for a prediction market with these limits")
    return budget // VISIT_GAS_PER_ENTRY


@dataclass(frozen=True)
class MarketParams:
    min_stake: int
    allow_greater_stake: bool = False
    max_data_length: int = 64
    max_test_entries: int = 1_500  # with max_data_length 64, a visit fits half a 30M-gas block
    reveal_delay_blocks: int = 1
    reveal_timeout_s: int = 7 * SECONDS_PER_DAY

    def constructor_args(self, model: str) -> tuple[list[str], list[Any]]:
        return (["address", "uint256", "bool", "uint256", "uint256", "uint256", "uint256"],
                [model, self.min_stake, self.allow_greater_stake, self.max_data_length, self.max_test_entries,
                 self.reveal_delay_blocks, self.reveal_timeout_s])


def portion_hash(salt: bytes, samples: Sequence[Sequence[int]], labels: Sequence[int]) -> bytes:
    """keccak256(abi.encode(bytes32 salt, int64[][] samples, uint64[] labels)), as the market checks it."""
    return keccak256(abi_encode(["bytes32", "int64[][]", "uint64[]"],
                                [salt, [list(map(int, s)) for s in samples], list(map(int, labels))]))


@dataclass(frozen=True)
class TestPortion:
    salt: bytes
    samples: tuple[tuple[int, ...], ...]
    labels: tuple[int, ...]

    __test__ = False  # not a pytest class

    @property
    def hash(self) -> bytes:
        return portion_hash(self.salt, self.samples, self.labels)

    def args(self) -> tuple[bytes, list[list[int]], list[int]]:
        return self.salt, [list(s) for s in self.samples], list(self.labels)


def as_presence_set(sample: Sequence[int]) -> tuple[int, ...]:
    """The market's sample form: distinct non-negative feature indices in increasing order."""
    out = tuple(sorted({int(i) for i in sample}))
    if out and out[0] < 0:
        raise ValueError("feature indices must be non-negative")
    return out


def split_test_set(samples: Sequence[Sequence[int]], labels: Sequence[int], k: int,
                   salt_seed: bytes | None = None) -> list[TestPortion]:
    """Split a test set into k contiguous portions with one salt each (random unless `salt_seed`)."""
    if k < 2 or len(samples) < k or len(samples) != len(labels):
        raise ValueError("need k >= 2 and at least k samples, with one label each")
    portions = []
    n = len(samples)
    for i in range(k):
        a, b = i * n // k, (i + 1) * n // k
        salt = keccak256(salt_seed + i.to_bytes(32, "big")) if salt_seed is not None else os.urandom(32)
        portions.append(TestPortion(salt, tuple(as_presence_set(s) for s in samples[a:b]),
                                    tuple(int(y) for y in labels[a:b])))
    return portions


# ==================================================================================================
# Prediction market: exact off-chain twin of the reward phase
# ==================================================================================================


@dataclass(frozen=True)
class MarketContribution:
    contributor: str
    data: tuple[int, ...]
    label: int
    stake: int


@dataclass
class MarketOutcome:
    credits: dict[str, int]  # what each address can collect (provider included)
    passes: list[dict[str, Any]] = field(default_factory=list)  # per replay pass: survivors, correct, rounds
    final_balances: dict[int, int] = field(default_factory=dict)  # contribution id -> balance (wei * N)
    scores: dict[int, int] = field(default_factory=dict)  # contribution id -> score in its last replay pass
    initial_correct: int = 0
    final_weights: dict[int, int] = field(default_factory=dict)  # feature -> weight after the last replay


@dataclass
class MarketTwin:
    """The reward phase with the contract's integer arithmetic (eager form of its lazy passes)."""

    weights: Sequence[int]  # starting weights, fixed point
    intercept: int
    learning_rate: int
    min_stake: int

    def _w(self, f: int) -> int:
        return int(self.weights[f]) if f < len(self.weights) else 0

    def margin(self, x: Sequence[int], delta: dict[int, int]) -> int:
        return self.intercept + sum(self._w(f) + delta.get(f, 0) for f in x)

    def n_correct(self, tests: Sequence[tuple[Sequence[int], int]], delta: dict[int, int]) -> int:
        return sum(int(self.margin(x, delta) > 0) == y for x, y in tests)

    def run(self, provider: str, bounty: int, tests: Sequence[tuple[Sequence[int], int]],
            contributions: Sequence[MarketContribution]) -> MarketOutcome:
        credits: dict[str, int] = defaultdict(int)
        total_stakes = sum(c.stake for c in contributions)
        out = MarketOutcome(credits=credits)
        if not contributions:
            credits[provider] += bounty
            return out
        n = len(tests)
        correct0 = self.n_correct(tests, {})
        out.initial_correct = correct0
        bal = {i: c.stake * n for i, c in enumerate(contributions)}
        active = list(range(len(contributions)))
        remaining = bounty
        while True:
            delta: dict[int, int] = {}
            correct = correct0
            scores: dict[int, int] = {}
            for i in active:
                c = contributions[i]
                if int(self.margin(c.data, delta) > 0) != c.label:
                    step = self.learning_rate if c.label == 1 else -self.learning_rate
                    for f in c.data:
                        delta[f] = delta.get(f, 0) + step
                    now = self.n_correct(tests, delta)
                else:
                    now = correct
                scores[i] = now - correct
                correct = now
            out.scores.update(scores)
            out.final_weights = {f: self._w(f) + d for f, d in delta.items()}
            ratios = [bal[i] // -scores[i] for i in active if scores[i] < 0]
            rounds = min(min(ratios), remaining) if ratios else remaining
            remaining -= rounds
            out.passes.append({"survivors": len(active), "correct": correct, "rounds": rounds,
                               "remaining": remaining})
            for i in active:
                bal[i] += scores[i] * rounds
                assert bal[i] >= 0
            if not ratios or remaining == 0:
                for i in active:
                    credits[contributions[i].contributor] += bal[i] // n
                break
            survivors = []
            for i in active:
                if bal[i] < self.min_stake * n:
                    credits[contributions[i].contributor] += bal[i] // n
                else:
                    survivors.append(i)
            if not survivors:
                break
            active = survivors
        out.final_balances = dict(bal)
        paid = sum(credits.values())
        credits[provider] += bounty + total_stakes - paid
        return out


# ==================================================================================================
# Prediction market: deployment and driver
# ==================================================================================================


@dataclass
class DeployedMarket:
    market: str
    model: str
    provider: str
    block: int
    n_features: int
    params: MarketParams
    gas_used: int
    abis: dict[str, ContractABI] = field(repr=False, default_factory=dict)
    model_contract: str = "SparsePerceptron"

    @property
    def abi(self) -> ContractABI:
        return self.abis["PredictionMarket"]

    @property
    def model_abi(self) -> ContractABI:
        return self.abis[self.model_contract]

    @property
    def errors(self) -> dict[bytes, tuple[str, list[str]]]:
        return merge_errors(*self.abis.values())


def _created(receipt: dict[str, Any], what: str) -> str:
    addr = receipt.get("contractAddress")
    if not addr:
        raise DeploymentError(f"{what}: receipt has no contract address")
    return to_checksum_address(addr)


async def deploy_market(client: RpcClient, tx: Transactor, compiled: CompileResult, model: ModelSpec,
                        params: MarketParams, *, gas_limit: int) -> DeployedMarket:
    """Deploy the starting model (chunked), the market (the deployer becomes the provider), and hand
    the model to the market, which then owns it (nobody can train it during the market)."""
    if model.contract != "SparsePerceptron":
        raise DeploymentError(f"the prediction market replays a SparsePerceptron only, not a {model.contract}")
    if getattr(model, "averaging", 0):
        raise DeploymentError("the prediction market replays the plain perceptron only, not an averaged one")
    abis = abis_of(compiled)
    gas_before = tx.gas_used
    ctypes, cargs = model.constructor()
    r = await tx.send(None, compiled[model.contract].bytecode + (abi_encode(ctypes, cargs) if ctypes else b""),
                      what=f"deploy {model.contract}")
    model_addr = _created(r, model.contract)
    for what, calldata in model.init_calls(abis[model.contract], gas_limit):
        await tx.send(model_addr, calldata, what=what)
    types, args = params.constructor_args(model_addr)
    r = await tx.send(None, compiled["PredictionMarket"].bytecode + abi_encode(types, args),
                      what="deploy PredictionMarket")
    market = _created(r, "PredictionMarket")
    block = int(r["blockNumber"], 16)
    await tx.send(model_addr, abis[model.contract].encode("transferOwnership", market),
                  what=f"transfer {model.contract}")
    deployed = DeployedMarket(market=market, model=model_addr, provider=tx.account.address, block=block,
                              n_features=model.n_features, params=params, gas_used=tx.gas_used - gas_before,
                              abis=abis, model_contract=model.contract)
    await verify_market(client, deployed)
    return deployed


async def verify_market(client: RpcClient, m: DeployedMarket) -> None:
    """Refuse a market that does not own its model or reads another one."""
    got = to_checksum_address(m.abi.fn("model").decode(await client.eth_call(m.market, m.abi.encode("model"))))
    if got != m.model:
        raise DeploymentError(f"market reads model {got}, expected {m.model}")
    owner_fn = m.model_abi.fn("owner")
    owner = to_checksum_address(owner_fn.decode(await client.eth_call(m.model, owner_fn.encode())))
    if owner != m.market:
        raise DeploymentError(f"model {m.model} is owned by {owner}, not by the market {m.market}")


class MarketDriver:
    """Runs one market round from Python. Every sending method takes the sender's Transactor."""

    def __init__(self, client: RpcClient, deployed: DeployedMarket):
        self.client = client
        self.m = deployed
        self.abi = deployed.abi

    # ---- reads -----------------------------------------------------------------------------------

    async def view(self, fn: str, *args: Any, block: int | str = "latest") -> Any:
        f = self.abi.fn(fn)
        return f.decode(await self.client.eth_call(self.m.market, f.encode(*args), block))

    async def phase(self) -> Phase:
        return Phase(await self.view("phase"))

    async def claimable(self, address: str) -> int:
        return await self.view("claimableBalance", address)

    async def reveal_index(self) -> int | None:
        return await self.view("revealIndex") if await self.view("revealIndexDrawn") else None

    async def revert_reason(self, sender: str, fn: str, *args: Any, value: int = 0) -> str | None:
        """The decoded revert reason of calling `fn` now from `sender`, or None if it would succeed."""
        call = {"from": sender, "to": self.m.market, "data": "0x" + self.abi.encode(fn, *args).hex(),
                "value": hex(value)}
        try:
            await self.client.call("eth_call", call, "latest")
        except RpcError as e:
            return decode_revert(e.data if isinstance(e.data, str) else None, self.m.errors)
        return None

    async def _send(self, tx: Transactor, fn: str, *args: Any, value: int = 0, gas: int | None = None
                    ) -> dict[str, Any]:
        try:
            return await tx.send(self.m.market, self.abi.encode(fn, *args), value, gas=gas, what=fn)
        except TransactionFailed as e:
            if e.receipt is None:
                tx.nonce = None  # refused at estimation: nothing was sent
                reason = await self.revert_reason(tx.account.address, fn, *args, value=value)
                raise TransactionFailed(fn, None, reason or e.reason) from e
            raise

    def events(self, receipt: dict[str, Any], name: str) -> list[dict[str, Any]]:
        out = []
        for log in receipt.get("logs", []):
            if log["address"].lower() != self.m.market.lower():
                continue
            d = self.abi.decode_log(log)
            if d is not None and d[0] == name:
                out.append(d[1])
        return out

    # ---- initialization --------------------------------------------------------------------------

    async def initialize(self, tx: Transactor, bounty: int, portions: Sequence[TestPortion], *,
                         min_length_s: int, min_contributions: int) -> dict[str, Any]:
        return await self._send(tx, "initializeMarket", [p.hash for p in portions], min_length_s,
                                min_contributions, value=bounty)

    async def add_portions(self, tx: Transactor, portions: Sequence[TestPortion]) -> dict[str, Any]:
        return await self._send(tx, "addTestSetHashes", [p.hash for p in portions])

    async def draw(self, tx: Transactor) -> int:
        """Mine past the draw block if needed, fix the reveal index, return it."""
        draw_block = await self.view("drawBlock")
        while await self.client.block_number() <= draw_block:
            await self.client.call("evm_mine")
        if not await self.view("revealIndexDrawn"):
            await self._send(tx, "drawRevealIndex")
        index = await self.reveal_index()
        if index is None:
            raise RuntimeError("the draw was re-scheduled (draw block too old); call draw again")
        return index

    async def reveal_init(self, tx: Transactor, portions: Sequence[TestPortion]) -> int:
        index = await self.draw(tx)
        await self._send(tx, "revealInitTestSet", *portions[index].args())
        return index

    # ---- participation ---------------------------------------------------------------------------

    async def contribute(self, tx: Transactor, data: Sequence[int], label: int, value: int | None = None
                         ) -> dict[str, Any]:
        if value is None:
            value = self.m.params.min_stake
        return await self._send(tx, "addData", list(as_presence_set(data)), label, value=value)

    async def end_participation(self, tx: Transactor) -> dict[str, Any]:
        return await self._send(tx, "endParticipation")

    # ---- reveal ----------------------------------------------------------------------------------

    async def reveal_test_set(self, tx: Transactor, portions: Sequence[TestPortion]) -> int:
        """Reveal every portion but the drawn one, in order; returns the number of transactions."""
        index = await self.view("revealIndex")
        sent = 0
        for i, p in enumerate(portions):
            if i == index:
                continue
            await self._send(tx, "revealTestSet", i, *p.args())
            sent += 1
        return sent

    # ---- reward ----------------------------------------------------------------------------------

    async def process_all(self, tx: Transactor, max_count: int = 64, gas_cap: int | None = None
                          ) -> list[dict[str, Any]]:
        """processContributions until the reward phase ends. A batch whose gas estimate exceeds
        `gas_cap` (default: half the block gas limit) is halved. Returns the receipts."""
        if gas_cap is None:
            block = await self.client.get_block("latest")
            gas_cap = int(block["gasLimit"], 16) // 2 if block else 15_000_000
        receipts = []
        count = max_count
        while await self.phase() == Phase.REWARD:
            data = self.abi.encode("processContributions", count)
            estimate = await tx.estimate(self.m.market, data)
            if estimate > gas_cap and count > 1:
                count = max(1, count // 2)
                continue
            receipts.append(await tx.send(self.m.market, data, gas=int(estimate * 1.25) + 50_000,
                                          what="processContributions"))
        return receipts

    # ---- collect ---------------------------------------------------------------------------------

    async def collect(self, tx: Transactor) -> dict[str, Any]:
        return await self._send(tx, "collect")

    async def claim_unclaimed(self, tx: Transactor, participant: str) -> dict[str, Any]:
        return await self._send(tx, "claimUnclaimed", participant)

    async def cancel(self, tx: Transactor) -> dict[str, Any]:
        return await self._send(tx, "cancelMarket")

    async def abort(self, tx: Transactor) -> dict[str, Any]:
        return await self._send(tx, "abortMarket")

    # ---- inspection ------------------------------------------------------------------------------

    async def revealed_test_set(self, portions: Sequence[TestPortion]) -> list[tuple[tuple[int, ...], int]]:
        """The scored test samples in the market's order (every portion but the drawn one)."""
        index = await self.view("revealIndex")
        return [(x, y) for i, p in enumerate(portions) if i != index for x, y in zip(p.samples, p.labels)]

    async def contributions(self) -> list[MarketContribution]:
        """Every contribution in order, rebuilt from the market's AddData events (the stake is the
        event's cost), ready for `MarketTwin.run`."""
        ev = self.abi.events_by_name["AddData"]
        logs = await self.client.call("eth_getLogs", {"address": self.m.market, "fromBlock": hex(self.m.block),
                                                      "toBlock": "latest", "topics": ["0x" + ev.topic.hex()]})
        out = []
        for log in sorted(logs, key=lambda g: (int(g["blockNumber"], 16), int(g["logIndex"], 16))):
            _, args = self.abi.decode_log(log)
            out.append(MarketContribution(args["sender"], tuple(args["d"]), int(args["c"]), int(args["cost"])))
        return out


@dataclass
class RoundResult:
    reveal_index: int
    receipts: dict[str, list[dict[str, Any]]]
    credits: dict[str, int]

    def gas(self, step: str) -> int:
        return sum(int(r["gasUsed"], 16) for r in self.receipts.get(step, []))


async def run_round(driver: MarketDriver, provider: Transactor, bounty: int, portions: Sequence[TestPortion],
                    contributions: Sequence[tuple[Transactor, Sequence[int], int, int | None]], *,
                    min_length_s: int = 0, min_contributions: int = 1, max_count: int = 64) -> RoundResult:
    """Drive one market end to end: initialize, draw and reveal, contribute (tx, data, label, value),
    end, reveal the test set, process every pass. Balances are left for the participants to collect."""
    receipts: dict[str, list[dict[str, Any]]] = defaultdict(list)
    receipts["initialize"].append(await driver.initialize(provider, bounty, portions, min_length_s=min_length_s,
                                                          min_contributions=min_contributions))
    index = await driver.reveal_init(provider, portions)
    addresses = {provider.account.address}
    for t, data, label, value in contributions:
        receipts["addData"].append(await driver.contribute(t, data, label, value))
        addresses.add(t.account.address)
    receipts["end"].append(await driver.end_participation(provider))
    if await driver.phase() == Phase.REVEAL_TEST_SET:
        await driver.reveal_test_set(provider, portions)
        receipts["process"].extend(await driver.process_all(provider, max_count))
    credits = {a: await driver.claimable(a) for a in sorted(addresses)}
    return RoundResult(index, dict(receipts), credits)
