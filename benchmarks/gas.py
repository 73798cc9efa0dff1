"""Gas benchmark: the protocol of shared/spec/gas-benchmark.md, run on our contracts.

Every row gets a fresh deployment on its own anvil node (started here), timestamps are set with
`evm_setNextBlockTimestamp`, and the gas of each step is the receipt's gasUsed:

1. warm-up (not measured) at T: A0 adds (x, y), y = the model's current prediction; refund at T+60;
2. T+100: A1 adds (x, y) with msg.value = 1e17 (the excess comes back)   -> "add, agrees"
3. T+170: A1 refunds it                                                  -> "refund"
4. T+200: A2 adds (x, 1-y) with msg.value = 1e17                         -> "add, mispredicts"
5. T+270: A1 reports (takes) A2's contribution, proportional branch      -> "report"

Ratios are to the reference's optimizer-on figures (for dense models' deployments only the
optimizer-off figures exist). Run: `python -m benchmarks.gas [--output benchmarks/results/gas.json]`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.compiler import CompileResult, compile_contracts
from contracts.deploy import ModelSpec, StakeableSpec, deploy_system
from contracts.models import (
    DenseNearestCentroidSpec,
    DensePerceptronSpec,
    NaiveBayesSpec,
    SparseNearestCentroidSpec,
    SparsePerceptronSpec,
)
from contracts.rpc import RpcClient
from contracts.signing import LocalAccount, dev_accounts
from contracts.transact import Transactor

F = 10**9
VALUE = 10**17
STAKEABLE = StakeableSpec(refund_wait_s=60, owner_claim_wait_s=86_400, any_address_claim_wait_s=7 * 86_400,
                          cost_weight=10**9)
OPERATIONS = ("add, agrees", "add, mispredicts", "refund", "report")
TARGET_OPERATIONS = 0.70
TARGET_DEPLOYMENT = 0.50
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "gas.json"

# Reference gasUsed with the optimizer on (runs = 200): add agrees, add mispredicts, refund, report.
REFERENCE: dict[tuple[str, str], tuple[int, int, int, int]] = {
    ("sparse perceptron", "s=10"): (219_917, 235_013, 167_702, 154_361),
    ("sparse perceptron", "s=30"): (288_765, 373_701, 230_090, 216_750),
    ("sparse perceptron", "s=60"): (392_081, 581_777, 323_715, 310_376),
    ("naive Bayes", "s=10"): (238_278, 258_190, 211_962, 198_645),
    ("naive Bayes", "s=30"): (368_026, 387_938, 342_629, 329_313),
    ("naive Bayes", "s=60"): (562_692, 582_604, 538_743, 525_428),
    ("sparse nearest centroid", "s=10"): (245_233, 265_145, 210_283, 196_966),
    ("sparse nearest centroid", "s=30"): (382_615, 402_527, 338_739, 325_423),
    ("sparse nearest centroid", "s=60"): (588_755, 608_667, 531_702, 518_387),
    ("dense perceptron", "d=8"): (210_988, 203_799, 155_880, 142_539),
    ("dense perceptron", "d=64"): (369_061, 439_535, 273_046, 259_708),
    ("dense nearest centroid", "d=8"): (205_371, 225_283, 160_517, 147_200),
    ("dense nearest centroid", "d=64"): (388_427, 408_339, 276_733, 263_419),
}
# The averaged sparse perceptron (`model.averaging`) has no reference figure of its own: it is held to
# the plain reference perceptron it replaces.
AVERAGED = "sparse perceptron, averaged"
AVERAGING = 240  # as in scenarios/label_flip.yaml
for _s in ("s=10", "s=30", "s=60"):
    REFERENCE[(AVERAGED, _s)] = REFERENCE[("sparse perceptron", _s)]
# Points (gamification), sparse perceptron, y = 1: add (agrees), optimizer on.
REFERENCE_POINTS_ADD = {"s=10": 181_883, "s=30": 250_731, "s=60": 354_046}
# Full deployment: (gas, compiler setting of the reference figure).
REFERENCE_DEPLOYMENT: dict[tuple[str, str], tuple[int, str]] = {
    ("sparse perceptron", "1000 weights"): (27_900_000, "optimizer on"),
    (AVERAGED, "1000 weights"): (27_900_000, "optimizer on"),
    ("naive Bayes", "2 x 1000 counts"): (54_300_000, "optimizer on"),
    ("sparse nearest centroid", "2 x 1000 values"): (54_700_000, "optimizer on"),
    ("dense perceptron", "d=8"): (7_360_000, "optimizer off"),
    ("dense perceptron", "d=64"): (7_820_000, "optimizer off"),
    ("dense nearest centroid", "d=8"): (7_910_000, "optimizer off"),
    ("dense nearest centroid", "d=64"): (8_610_000, "optimizer off"),
}


# ---- the protocol's models and inputs ------------------------------------------------------------


def sparse_input(s: int, odd: bool = False) -> list[int]:
    """idx_k = 2 * floor(k * 500 / s) + 2 for k < s (sorted, distinct, in [2, 1000)); odd adds 1."""
    return [2 * (k * 500 // s) + 2 + int(odd) for k in range(s)]


def dense_input(d: int) -> list[int]:
    """x_i proportional to 1 + (i mod 4), scaled to unit L2 norm, x1e9, rounded."""
    raw = [1 + (i % 4) for i in range(d)]
    norm = math.sqrt(sum(v * v for v in raw))
    return [round(v / norm * F) for v in raw]


def fixed(x: float) -> int:
    return round(x * F)


def sparse_perceptron_model() -> SparsePerceptronSpec:
    weights = [fixed(0.3 + 1e-4 * ((7919 * i) % 1000)) * (1 if i % 2 == 0 else -1) for i in range(1000)]
    return SparsePerceptronSpec(weights=weights, intercept=0, learning_rate=fixed(0.1))


def averaged_sparse_perceptron_model() -> SparsePerceptronSpec:
    return dataclasses.replace(sparse_perceptron_model(), averaging=AVERAGING)


def dense_perceptron_model(d: int, y: int = 1) -> DensePerceptronSpec:
    sign = 1 if y == 1 else -1
    return DensePerceptronSpec(weights=[sign * fixed(1 + 0.01 * i) for i in range(d)], intercept=0,
                               learning_rate=F)


def naive_bayes_model() -> NaiveBayesSpec:
    counts = [{j: 1 + (31 * j + 17 * c) % 50 for j in range(1000)} for c in (0, 1)]
    return NaiveBayesSpec(class_counts=[100, 100], feature_counts=counts, vocabulary_size=1000, smoothing=F)


def dense_centroid_model(d: int) -> DenseNearestCentroidSpec:
    x = dense_input(d)
    class0 = [round(0.8 * v) for v in x]
    class1 = [fixed(0.02 + 0.08 * ((7 * i) % 9) / 8) for i in range(d)]  # entries in [0.02, 0.10]
    return DenseNearestCentroidSpec(centroids=[class0, class1], data_counts=[100, 100])


def sparse_centroid_model() -> SparseNearestCentroidSpec:
    # class c: 0.5 on features of parity c, 0.01 .. 0.059 elsewhere; 100 samples, so s = c * 1e9 * 100
    centroids = [{j: fixed(0.5) if j % 2 == c else fixed(0.01 + 0.001 * (j % 50)) for j in range(1000)}
                 for c in (0, 1)]
    return SparseNearestCentroidSpec.from_centroids(centroids, [100, 100], 1000)


@dataclass(frozen=True)
class Case:
    model: str
    input: str
    spec: ModelSpec
    sample: list[int]
    deployment: str  # the label of this model's full-deployment row


def cases() -> list[Case]:
    out: list[Case] = []
    for s in (10, 30, 60):
        out.append(Case("sparse perceptron", f"s={s}", sparse_perceptron_model(), sparse_input(s), "1000 weights"))
    for s in (10, 30, 60):
        out.append(Case(AVERAGED, f"s={s}", averaged_sparse_perceptron_model(), sparse_input(s), "1000 weights"))
    for s in (10, 30, 60):
        out.append(Case("naive Bayes", f"s={s}", naive_bayes_model(), sparse_input(s), "2 x 1000 counts"))
    for s in (10, 30, 60):
        out.append(Case("sparse nearest centroid", f"s={s}", sparse_centroid_model(), sparse_input(s),
                        "2 x 1000 values"))
    for d in (8, 64):
        out.append(Case("dense perceptron", f"d={d}", dense_perceptron_model(d), dense_input(d), f"d={d}"))
    for d in (8, 64):
        out.append(Case("dense nearest centroid", f"d={d}", dense_centroid_model(d), dense_input(d), f"d={d}"))
    return out


# ---- measurement ---------------------------------------------------------------------------------


@dataclass
class CaseResult:
    model: str
    input: str
    label: int
    gas: dict[str, int]
    deployment_gas: int
    deployment: str
    points_add: int | None = None
    receipts: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)


class Bench:
    """One node, one compile; a fresh system per measured row."""

    def __init__(self, client: RpcClient, compiled: CompileResult, accounts: Sequence[LocalAccount], chain_id: int,
                 gas_limit: int):
        self.client = client
        self.compiled = compiled
        self.chain_id = chain_id
        self.gas_limit = gas_limit
        # deployer, A0, A1, A2: fresh transactors read their nonce from the node
        self.tx = [Transactor(client, a, chain_id) for a in accounts[:4]]

    async def _latest_time(self) -> int:
        block = await self.client.get_block("latest")
        assert block is not None
        return int(block["timestamp"], 16)

    async def _send_at(self, ts: int, who: Transactor, to: str, data: bytes, value: int = 0) -> dict[str, Any]:
        await self.client.call("evm_setNextBlockTimestamp", ts)
        return await who.send(to, data, value)

    async def measure(self, case: Case) -> CaseResult:
        system = await deploy_system(self.client, self.tx[0], self.compiled, case.spec, STAKEABLE,
                                     gas_limit=self.gas_limit)
        trainer = system.abis["CollaborativeTrainer"]
        x = case.sample
        y = trainer.fn("predict").decode(await self.client.eth_call(system.trainer, trainer.encode("predict", x)))
        _, a0, a1, a2 = self.tx
        t = await self._latest_time() + 1000
        gas: dict[str, int] = {}
        receipts: dict[str, dict[str, Any]] = {}

        async def step(name: str | None, ts: int, who: Transactor, data: bytes, value: int = 0) -> None:
            r = await self._send_at(ts, who, system.trainer, data, value)
            if name:
                gas[name] = int(r["gasUsed"], 16)
                receipts[name] = r

        await step(None, t, a0, trainer.encode("addData", x, y), VALUE)
        await step(None, t + 60, a0, trainer.encode("refund", x, y, t))
        await step("add, agrees", t + 100, a1, trainer.encode("addData", x, y), VALUE)
        await step("refund", t + 170, a1, trainer.encode("refund", x, y, t + 100))
        await step("add, mispredicts", t + 200, a2, trainer.encode("addData", x, 1 - y), VALUE)
        await step("report", t + 270, a1, trainer.encode("report", x, 1 - y, t + 200, a2.account.address))
        return CaseResult(case.model, case.input, int(y), gas, system.gas_used, case.deployment, receipts=receipts)

    async def measure_points_add(self, case: Case) -> int | None:
        """Points (gamification): A1's add of (x, y) after A0's validated warm-up; no deposit is asked,
        so nothing is sent with it. None when the Points contract is not part of the sources."""
        if "Points" not in self.compiled.artifacts:
            return None
        from contracts.mechanisms import PointsSpec

        spec = PointsSpec(refund_wait_s=60, owner_claim_wait_s=86_400, any_address_claim_wait_s=7 * 86_400)
        system = await deploy_system(self.client, self.tx[0], self.compiled, case.spec, spec, gas_limit=self.gas_limit)
        trainer = system.abis["CollaborativeTrainer"]
        x = case.sample
        y = trainer.fn("predict").decode(await self.client.eth_call(system.trainer, trainer.encode("predict", x)))
        _, a0, a1, _ = self.tx
        t = await self._latest_time() + 1000
        await self._send_at(t, a0, system.trainer, trainer.encode("addData", x, y))
        await self._send_at(t + 60, a0, system.trainer, trainer.encode("refund", x, y, t))
        r = await self._send_at(t + 100, a1, system.trainer, trainer.encode("addData", x, y))
        return int(r["gasUsed"], 16)


def ratio(gas: int, reference: int) -> float:
    return round(gas / reference, 3)


def rows_of(results: Sequence[CaseResult]) -> list[dict[str, Any]]:
    """The JSON rows: (model, input, operation, gas, reference gas, ratio), then deployments."""
    rows: list[dict[str, Any]] = []
    for r in results:
        ref = REFERENCE[(r.model, r.input)]
        for op, ref_gas in zip(OPERATIONS, ref):
            rows.append({"model": r.model, "input": r.input, "operation": op, "y": r.label, "gas": r.gas[op],
                         "reference_gas": ref_gas, "ratio": ratio(r.gas[op], ref_gas), "target": TARGET_OPERATIONS})
        if r.points_add is not None:
            ref_gas = REFERENCE_POINTS_ADD[r.input]
            rows.append({"model": r.model, "input": r.input, "operation": "points: add, agrees", "y": r.label,
                         "gas": r.points_add, "reference_gas": ref_gas, "ratio": ratio(r.points_add, ref_gas),
                         "target": TARGET_OPERATIONS})
    seen: set[tuple[str, str]] = set()
    for r in results:
        key = (r.model, r.deployment)
        if key in seen:
            continue
        seen.add(key)
        ref_gas, setting = REFERENCE_DEPLOYMENT[key]
        rows.append({"model": r.model, "input": r.deployment, "operation": "full deployment", "gas": r.deployment_gas,
                     "reference_gas": ref_gas, "reference_setting": setting,
                     "ratio": ratio(r.deployment_gas, ref_gas), "target": TARGET_DEPLOYMENT})
    return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The reference's table with our gas and the ratio to the reference in each cell."""
    by_case: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_case.setdefault((row["model"], row["input"]), {})[row["operation"]] = row

    def cell(row: dict[str, Any] | None) -> str:
        if row is None:
            return ""
        mark = " *" if row["ratio"] > row["target"] else ""
        return f"{row['gas']:,} ({row['ratio']:.2f}){mark}"

    lines = ["| model | input | y | add, agrees | add, mispredicts | refund | report |",
             "|---|---|---|---|---|---|---|"]
    for (model, inp), ops in by_case.items():
        if "refund" not in ops:
            continue
        y = ops["refund"].get("y", "")
        lines.append(f"| {model} | {inp} | {y} | " + " | ".join(cell(ops.get(op)) for op in OPERATIONS) + " |")
    points = [ops["points: add, agrees"] for ops in by_case.values() if "points: add, agrees" in ops]
    if points:
        lines += ["", "| Points, sparse perceptron | add, agrees |", "|---|---|"]
        lines += [f"| {p['input']} | {cell(p)} |" for p in points]
    deployments = [ops["full deployment"] for ops in by_case.values() if "full deployment" in ops]
    lines += ["", "| full deployment | size | gas (ratio) | reference |", "|---|---|---|---|"]
    lines += [f"| {d['model']} | {d['input']} | {cell(d)} | {d['reference_gas']:,} ({d['reference_setting']}) |"
              for d in deployments]
    lines += ["", f"(ratio) = ours / reference; * = above target ({TARGET_OPERATIONS} per operation, "
                  f"{TARGET_DEPLOYMENT} for a full deployment)"]
    return "\n".join(lines)


async def run_benchmark(selected: Sequence[Case] | None = None, *, points: bool = True,
                        log_dir: Path | None = None) -> list[CaseResult]:
    from orchestrator.nodes import AnvilNode, NodeSettings

    compiled = compile_contracts()
    with tempfile.TemporaryDirectory() as tmp:
        node = AnvilNode(NodeSettings(), (log_dir or Path(tmp)) / "anvil-gas.log")
        node.start()
        try:
            async with RpcClient(node.url) as client:
                chain_id = await client.chain_id()
                block = await client.get_block("latest")
                assert block is not None
                bench = Bench(client, compiled, dev_accounts(4), chain_id, int(block["gasLimit"], 16))
                results = []
                for case in selected if selected is not None else cases():
                    result = await bench.measure(case)
                    if points and case.model == "sparse perceptron":
                        result.points_add = await bench.measure_points_add(case)
                    results.append(result)
                return results
        finally:
            node.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where to write the JSON rows")
    parser.add_argument("--model", action="append", help="only these models (repeatable)")
    args = parser.parse_args(argv)
    selected = [c for c in cases() if not args.model or c.model in args.model]
    results = asyncio.run(run_benchmark(selected))
    rows = rows_of(results)
    print(format_table(rows))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"\nwrote {len(rows)} rows to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
