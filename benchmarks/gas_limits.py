"""Worst-case gas of the agents' calls for every model family, measured on a real anvil node, against
the limits `agents/gas.py` gives them.

Per family, class count k and input size n (feature indices, or the dense dimension) a fresh system
is deployed whose model state makes each call as expensive as it gets: the add writes a fresh
storage slot per index (indices 4 apart, so no two share a packed slot; dense vectors with negative
components, whose calldata words are all non-zero bytes) and is the first add of the system; the
refund is the address's first claim; the report follows a contribution the model has turned against.
Refund, report and predict read every class's state for every index, hence the k dependence.

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

from agents import gas as gas_limits
from contracts.compiler import CompileResult, compile_contracts
from contracts.deploy import StakeableSpec, deploy_system
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
STAKEABLE = StakeableSpec(refund_wait_s=WAIT, owner_claim_wait_s=WAIT, any_address_claim_wait_s=WAIT,
                          cost_weight=10**9)


@dataclass(frozen=True)
class Case:
    contract: str
    k: int
    n: int


def cases() -> list[Case]:
    out = [Case("SparsePerceptron", 2, n) for n in (5, 40, 90)]
    out += [Case("DensePerceptron", 2, d) for d in (9, 65)]
    for k in (2, 10):
        out += [Case("NaiveBayes", k, n) for n in (5, 40, 90)]
        out += [Case("SparseNearestCentroid", k, n) for n in (5, 40, 90)]
        out += [Case("DenseNearestCentroid", k, d) for d in (9, 65)]
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
    dense = case.contract.startswith("Dense")
    x = dense_vector(case.n) if dense else [4 * i for i in range(case.n)]
    system = await deploy_system(client, txs[0], compiled, initial_spec(case, x), STAKEABLE, gas_limit=gas_limit)
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

    gas["add"] = await at(t, a1, t_abi.encode("addData", x, y), VALUE)
    if case.contract == "DenseNearestCentroid":
        # Its add writes fresh slots only into a class still at the origin: measured on a system
        # of zero centroids (the graded one above serves the calls that predict).
        zero = DenseNearestCentroidSpec([[0] * case.n for _ in range(case.k)], [1] * case.k,
                                        tuple(str(c) for c in range(case.k)))
        other = await deploy_system(client, txs[0], compiled, zero, STAKEABLE, gas_limit=gas_limit)
        r = await a0.send(other.trainer, t_abi.encode("addData", x, 0), VALUE)
        gas["add"] = max(gas["add"], int(r["gasUsed"], 16))
    gas["refund"] = await at(t + WAIT, a1, t_abi.encode("refund", x, y, t))
    t2 = t + WAIT + 10
    await at(t2, a2, t_abi.encode("addData", x, wrong), VALUE)
    if "Perceptron" in case.contract:
        # The perceptron learnt A2's label; one more add of the true label turns it back.
        await at(t2 + 5, a0, t_abi.encode("addData", x, y), VALUE)
    gas["report"] = await at(t2 + WAIT + 5, a1, t_abi.encode("report", x, wrong, t2, a2.account.address))
    gas["predict"] = await txs[0].estimate(system.trainer, t_abi.encode("predict", x))
    return gas


def limits(case: Case) -> dict[str, int]:
    args = (case.n, case.contract, case.k)
    return {"add": gas_limits.add_data_gas(*args), "refund": gas_limits.refund_gas(*args),
            "report": gas_limits.report_gas(*args), "predict": gas_limits.predict_gas(*args)}


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
                        rows.append({"model": case.contract, "classes": case.k, "n": case.n, "operation": op,
                                     "gas": g, "limit": lim[op], "limit_over_gas": round(lim[op] / g, 3)})
        finally:
            node.stop()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    rows = asyncio.run(run())
    print(f"{'model':<22} {'k':>3} {'n':>4} {'operation':<8} {'gas':>9} {'limit':>9} {'limit/gas':>9}")
    for r in rows:
        print(f"{r['model']:<22} {r['classes']:>3} {r['n']:>4} {r['operation']:<8} {r['gas']:>9} {r['limit']:>9} "
              f"{r['limit_over_gas']:>9}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
