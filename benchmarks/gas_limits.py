"""Worst-case gas of the agents' calls for every model family x mechanism x operation, measured on a
real anvil node, against the limits the families' tables give them (`agents/gas.py`).

Per mechanism (stakeable, points), family, class count k and input size n (feature indices, or the
dense dimension) a fresh system is deployed whose model state makes each call as expensive as it
gets: the add writes a fresh
storage slot per index (indices 4 apart, so no two share a packed slot; dense vectors with negative
components, whose calldata words are all non-zero bytes) and is the first add of the system; the
refund is the address's first claim; the report follows a contribution the model has turned against.
Refund, report and predict read every class's state for every index, hence the k dependence.
Under Points the refund and report are the first of the address and of the system (fresh counter
slots). The prediction market (sparse perceptron only) is measured on its own round: the add is the
market's first contribution from a new address; collect is measured after a settled round and after
an aborted one (which also returns the stake and a share of the bounty: the dearer path).

Run: `python -m benchmarks.gas_limits [--output benchmarks/results/gas_limits.json]`. The rows show
gas used, the limit and their ratio; `agents/gas.py`'s constants come from these measurements.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.families import get as get_family
from contracts.compiler import CompileResult, compile_contracts
from contracts.deploy import StakeableSpec, deploy_system
from contracts.mechanisms import MarketDriver, MarketParams, PointsSpec, deploy_market, split_test_set
from contracts.models import (
    DenseNearestCentroidSpec,
    DensePerceptronSpec,
    NaiveBayesSpec,
    SparseNearestCentroidSpec,
    SparsePerceptronSpec,
)
from contracts.rpc import RpcClient
from contracts.signing import dev_accounts
from contracts.transact import Transactor

F = 10**9
VOCABULARY = 400
VALUE = 10**17
WAIT = 60
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "gas_limits.json"
INCENTIVES = {
    "stakeable": StakeableSpec(refund_wait_s=WAIT, owner_claim_wait_s=WAIT, any_address_claim_wait_s=WAIT,
                               cost_weight=10**9),
    "points": PointsSpec(refund_wait_s=WAIT, owner_claim_wait_s=WAIT, any_address_claim_wait_s=WAIT),
}
STAKEABLE = INCENTIVES["stakeable"]
MARKET_SIZES = (5, 40, 64)  # up to the market's default max_data_length


@dataclass(frozen=True)
class Case:
    contract: str
    k: int
    n: int
    mechanism: str = "stakeable"


def cases() -> list[Case]:
    out: list[Case] = []
    for mech in INCENTIVES:
        out += [Case("SparsePerceptron", 2, n, mech) for n in (5, 40, 90)]
        out += [Case("DensePerceptron", 2, d, mech) for d in (9, 65)]
        for k in (2, 10):
            out += [Case("NaiveBayes", k, n, mech) for n in (5, 40, 90)]
            out += [Case("SparseNearestCentroid", k, n, mech) for n in (5, 40, 90)]
            out += [Case("DenseNearestCentroid", k, d, mech) for d in (9, 65)]
    out += [Case("SparsePerceptron", 2, n, "prediction_market") for n in MARKET_SIZES]
    return out


def dense_vector(d: int) -> list[int]:
    """Alternating signs, equal magnitudes, unit norm in fixed point."""
    v = round(F / math.sqrt(d))
    out = [v if i % 2 == 0 else -v for i in range(d)]
    out[0] += round((F * F - sum(x * x for x in out)) / (2 * out[0]))  # nudge into the norm tolerance
    return out


def initial_spec(case: Case, x: list[int]) -> Any:
    """A model with every class known (one sample each) and no state on the measured inputs; dense
    nearest centroid: class c's centroid at x * c / k, so every class is nearer to x than the one
    before and predict never stops a class early (its only data-dependent saving)."""
    names = tuple(str(c) for c in range(case.k))
    if case.contract == "SparsePerceptron":
        return SparsePerceptronSpec(weights=[0] * VOCABULARY)
    if case.contract == "DensePerceptron":
        return DensePerceptronSpec(weights=[0] * case.n)
    if case.contract == "NaiveBayes":
        return NaiveBayesSpec([1] * case.k, [{} for _ in range(case.k)], VOCABULARY, F, names)
    if case.contract == "SparseNearestCentroid":
        return SparseNearestCentroidSpec([{} for _ in range(case.k)], [1] * case.k, VOCABULARY, names)
    return DenseNearestCentroidSpec([[v * c // case.k for v in x] for c in range(case.k)], [1] * case.k, names)


async def measure(client: RpcClient, compiled: CompileResult, txs: list[Transactor], gas_limit: int,
                  case: Case) -> dict[str, int]:
    if case.mechanism == "prediction_market":
        return await measure_market(client, compiled, txs, gas_limit, case.n)
    dense = case.contract.startswith("Dense")
    x = dense_vector(case.n) if dense else [4 * i for i in range(case.n)]
    incentive = INCENTIVES[case.mechanism]
    value = 0 if case.mechanism == "points" else VALUE  # Points keeps no deposit
    system = await deploy_system(client, txs[0], compiled, initial_spec(case, x), incentive, gas_limit=gas_limit)
    t_abi = system.abis["CollaborativeTrainer"]
    # Label 1 mispredicts on the empty perceptrons (score 0 predicts 0); NB and sparse centroids:
    # class 0 wins ties, so a later contribution of another class can be reported; dense centroids:
    # the last class is the nearest.
    if "Perceptron" in case.contract:
        y, wrong = 1, 0
    elif case.contract == "DenseNearestCentroid":
        y, wrong = case.k - 1, 0
    else:
        y, wrong = 0, case.k - 1
    a0, a1, a2 = txs[1], txs[2], txs[3]
    block = await client.get_block("latest")
    assert block is not None
    t = int(block["timestamp"], 16) + 100
    gas: dict[str, int] = {}

    async def at(ts: int, who: Transactor, data: bytes, value: int = 0) -> int:
        await client.call("evm_setNextBlockTimestamp", ts)
        r = await who.send(system.trainer, data, value)
        return int(r["gasUsed"], 16)

    gas["add"] = await at(t, a1, t_abi.encode("addData", x, y), value)
    if case.contract == "DenseNearestCentroid":
        # Its add writes fresh slots only into a class still at the origin: measured on a system
        # of zero centroids (the graded one above serves the calls that predict).
        zero = DenseNearestCentroidSpec([[0] * case.n for _ in range(case.k)], [1] * case.k,
                                        tuple(str(c) for c in range(case.k)))
        other = await deploy_system(client, txs[0], compiled, zero, incentive, gas_limit=gas_limit)
        r = await a0.send(other.trainer, t_abi.encode("addData", x, 0), value)
        gas["add"] = max(gas["add"], int(r["gasUsed"], 16))
    gas["refund"] = await at(t + WAIT, a1, t_abi.encode("refund", x, y, t))
    t2 = t + WAIT + 10
    await at(t2, a2, t_abi.encode("addData", x, wrong), value)
    if "Perceptron" in case.contract:
        # The perceptron learnt A2's label; one more add of the true label turns it back.
        await at(t2 + 5, a0, t_abi.encode("addData", x, y), value)
    gas["report"] = await at(t2 + WAIT + 5, a1, t_abi.encode("report", x, wrong, t2, a2.account.address))
    gas["predict"] = await txs[0].estimate(system.trainer, t_abi.encode("predict", x))
    return gas


async def measure_market(client: RpcClient, compiled: CompileResult, txs: list[Transactor], gas_limit: int,
                         n: int) -> dict[str, int]:
    """The market's add (first contribution of a new address: fresh stake, data and counter slots)
    and collect, after a settled round and after an aborted one (the larger is kept)."""
    x = [4 * i for i in range(n)]
    tests = [(1, 2), (3,), (5, 6), (7,)]
    portions = split_test_set(tests, [0, 1, 0, 1], 2, salt_seed=b"gas")
    provider, a1, a2 = txs[0], txs[1], txs[2]
    gas: dict[str, int] = {}
    for aborted in (False, True):
        params = MarketParams(min_stake=VALUE, max_data_length=max(MARKET_SIZES), reveal_timeout_s=WAIT)
        m = await deploy_market(client, provider, compiled, SparsePerceptronSpec(weights=[0] * VOCABULARY), params,
                                gas_limit=gas_limit)
        d = MarketDriver(client, m)
        await d.initialize(provider, VALUE, portions, min_length_s=0, min_contributions=1)
        await d.reveal_init(provider, portions)
        r = await d.contribute(a1, x, 1)
        gas["add"] = max(gas.get("add", 0), int(r["gasUsed"], 16))
        await d.contribute(a2, x, 0)
        await d.end_participation(provider)
        if aborted:
            await client.call("evm_increaseTime", WAIT + 1)
            await d.abort(a2)
        else:
            await d.reveal_test_set(provider, portions)
            await d.process_all(provider)
        for who in (a1, a2, provider):
            if await d.claimable(who.account.address):
                r = await d.collect(who)
                gas["collect"] = max(gas.get("collect", 0), int(r["gasUsed"], 16))
    return gas


def limits(case: Case) -> dict[str, int]:
    family = get_family(case.contract)
    ops = family.gas[case.mechanism]
    return {op: family.gas_limit(op, case.n, case.k, case.mechanism) for op in ops}


async def run() -> list[dict[str, Any]]:
    from orchestrator.nodes import AnvilNode, NodeSettings

    compiled = compile_contracts()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        node = AnvilNode(NodeSettings(), Path(tmp) / "anvil.log")
        node.start()
        try:
            async with RpcClient(node.url) as client:
                chain_id = await client.chain_id()
                block = await client.get_block("latest")
                assert block is not None
                txs = [Transactor(client, a, chain_id) for a in dev_accounts(4)]
                for case in cases():
                    used = await measure(client, compiled, txs, int(block["gasLimit"], 16), case)
                    lim = limits(case)
                    for op, g in used.items():
                        rows.append({"model": case.contract, "mechanism": case.mechanism, "classes": case.k,
                                     "n": case.n, "operation": op,
                                     "gas": g, "limit": lim[op], "limit_over_gas": round(lim[op] / g, 3)})
        finally:
            node.stop()
    return rows


def fit(rows: list[dict[str, Any]], margin: float = 1.25, step: int = 250) -> dict[tuple[str, str, str], tuple[int, ...]]:
    """Parts (fixed, per index, per class, per index and class) per (model, mechanism, operation):
    a least-squares fit of the measurements, parts rounded up to `step`, then the fixed part raised
    until no measurement exceeds the parts (so every limit is at least `margin` x its worst case).
    The per-class terms are fitted only where the class count was varied and the call reads the
    model's classes (not the add, not the market)."""
    import numpy as np

    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["mechanism"], r["operation"]), []).append(r)
    out: dict[tuple[str, str, str], tuple[int, ...]] = {}
    for key, rs in groups.items():
        n = np.array([r["n"] for r in rs], dtype=float)
        k = np.array([r["classes"] for r in rs], dtype=float)
        y = np.array([r["gas"] for r in rs], dtype=float)
        by_class = len(set(k.tolist())) > 1 and key[2] not in ("add", "collect")
        by_index = len(set(n.tolist())) > 1 and key[2] != "collect"
        cols = [np.ones_like(n), n if by_index else 0 * n, k if by_class else 0 * k, n * k if by_class else 0 * n]
        x = np.stack(cols, axis=1)
        coef = np.linalg.lstsq(x, y, rcond=None)[0]
        parts = [max(0, int(math.ceil(c / step)) * step) for c in coef]
        excess = max(y - x @ np.array(parts, dtype=float))
        if excess > 0:
            parts[0] += int(math.ceil(excess / step)) * step
        out[key] = tuple(parts)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--fit", action="store_true",
                        help="also print the parts of a table that covers every measurement (for the families)")
    args = parser.parse_args(argv)
    rows = asyncio.run(run())
    print(f"{'model':<22} {'mechanism':<17} {'k':>3} {'n':>4} {'operation':<8} {'gas':>9} {'limit':>9} "
          f"{'limit/gas':>9}")
    for r in rows:
        print(f"{r['model']:<22} {r['mechanism']:<17} {r['classes']:>3} {r['n']:>4} {r['operation']:<8} "
              f"{r['gas']:>9} {r['limit']:>9} {r['limit_over_gas']:>9}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(rows, indent=1) + "\n")
    if args.fit:
        for (model, mech, op), parts in sorted(fit(rows).items()):
            print(f"{model:<22} {mech:<17} {op:<8} {parts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
