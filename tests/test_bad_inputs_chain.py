"""Oversized and out-of-range contract inputs on the real node: each is refused cleanly (a revert with
a decoded reason, or a refusal at send), the ledger records why, and the agent goes on sending.

Three levels: the contracts themselves (eth_call and sent transactions), a shard whose adversarial
agent probes every bad input (`attack: malformed`) next to an honest agent, and a whole run whose
summary counts the reverts by reason.

A feature index at or beyond the model's width was once accepted by SparsePerceptron (read as a
zero weight and, on a mistake, written outside the model); it now reverts with FeatureOutOfRange.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import COST_WEIGHT, MAX_DEPOSIT, N_FEATURES, deploy_small, revert_reason

from agents.ledger import TxStatus
from agents.shard import AgentSpec, BlockInfo, ShardConfig, ShardCore
from contracts.transact import Transactor
from orchestrator.node import mine, set_mining

CONTRACT_NAMES = ("CollaborativeTrainer", "DataHandler", "Stakeable", "SparsePerceptron")
GOOD = (0, 2, 4)  # even features: the default model predicts 1


@pytest.fixture
async def driven(client):
    yield
    await set_mining(client, "auto")


async def latest(client) -> BlockInfo:
    b = await client.get_block("latest")
    return BlockInfo(int(b["number"], 16), int(b["timestamp"], 16), int(b["baseFeePerGas"], 16))


# ---- the contracts ------------------------------------------------------------------------------

async def test_contracts_refuse_bad_inputs_with_reasons(client, tx, compiled, dev):
    system = await deploy_small(client, tx, compiled)
    t = system.abis["CollaborativeTrainer"]
    me = dev[0].address

    async def why(data: bytes, value: int = 0) -> str | None:
        return await revert_reason(client, system, me, system.trainer, data, value)

    assert await why(t.encode("addData", [*GOOD, -1], 1), MAX_DEPOSIT) == "NegativeFeatureIndex(-1)"
    assert await why(t.encode("addData", list(GOOD), 2), MAX_DEPOSIT) == "BadClassification(2)"
    assert await why(t.encode("predict", [-5, *GOOD])) == "NegativeFeatureIndex(-5)"
    assert (await why(t.encode("refund", list(GOOD), 1, 12_345))).startswith("ContributionNotFound(")
    assert (await why(t.encode("report", list(GOOD), 1, 12_345, me))).startswith("ContributionNotFound(")
    assert (await why(t.encode("addData", list(GOOD), 1), 0)).startswith("DidNotPayEnough(")

    # A contribution that exists but is not claimable yet: neither refund nor report before the wait.
    receipt = await tx.send(system.trainer, t.encode("addData", list(GOOD), 1), MAX_DEPOSIT, gas=1_000_000)
    added = int((await client.get_block(int(receipt["blockNumber"], 16)))["timestamp"], 16)
    assert (await why(t.encode("refund", list(GOOD), 1, added))).startswith("NotEnoughTimeHasPassed(")
    other = dev[1].address
    reason = await revert_reason(client, system, other, system.trainer, t.encode("report", list(GOOD), 1, added, me))
    assert reason.startswith("NotEnoughTimeHasPassed(")
    # its own deposit is never the author's to take
    assert await why(t.encode("report", list(GOOD), 1, added, me)) == "CannotTakeOwnDeposit()"


async def test_an_array_too_big_for_a_block_is_refused_at_send_and_one_short_of_gas_reverts(
        client, tx, compiled, dev):
    from agents import gas as gas_limits
    from contracts.rpc import RpcError
    from contracts.transact import TransactionFailed

    system = await deploy_small(client, tx, compiled)
    t = system.abis["CollaborativeTrainer"]
    limit = int((await client.get_block("latest"))["gasLimit"], 16)
    huge = [2 * (i % 30) for i in range(3_000)]  # 3,000 indices (96 KB of calldata), all within the model
    calibrated = gas_limits.add_data_gas(len(huge))
    assert calibrated > limit  # what an agent would ask for: more than a block holds
    signed = await tx.sign(system.trainer, t.encode("addData", huge, 1), MAX_DEPOSIT, gas=calibrated)
    with pytest.raises(RpcError):  # the node refuses it outright
        await client.call("eth_sendRawTransaction", signed.raw_hex)
    tx.nonce = None  # the refused transaction did not use its nonce
    # With less gas than the work needs it runs out and reverts: nothing is recorded, the fee is paid.
    with pytest.raises(TransactionFailed) as info:
        await tx.send(system.trainer, t.encode("addData", huge, 1), MAX_DEPOSIT, gas=2_000_000)
    receipt = info.value.receipt
    assert receipt is not None and receipt["status"] == "0x0"
    assert int(receipt["gasUsed"], 16) > 2_000_000 - 2_000_000 // 64


async def test_index_beyond_the_model_is_refused(client, tx, compiled, dev):
    """SparsePerceptron knows its width: an index at or past it reverts before any weight is read
    or written (it once read such an index as weight 0 and, on a mistake, wrote it outside the model)."""
    from contracts.transact import TransactionFailed

    system = await deploy_small(client, tx, compiled)
    t = system.abis["CollaborativeTrainer"]
    m = system.abis["SparsePerceptron"]
    assert m.fn("numFeatures").decode(await client.eth_call(system.model, m.encode("numFeatures"))) == N_FEATURES
    for beyond in (N_FEATURES, N_FEATURES + 1_000):
        data = [*GOOD, beyond]
        why = await revert_reason(client, system, dev[0].address, system.trainer, t.encode("addData", data, 0),
                                  MAX_DEPOSIT)
        assert why == f"FeatureOutOfRange({beyond})"
        assert await revert_reason(client, system, dev[0].address, system.trainer,
                                   t.encode("predict", data)) == f"FeatureOutOfRange({beyond})"
    # Sent anyway (label 0 where the model says 1: an update if it went through), it reverts and
    # the slot that index would map to stays empty.
    beyond = N_FEATURES + 1_000
    with pytest.raises(TransactionFailed):
        await tx.send(system.trainer, t.encode("addData", [*GOOD, beyond], 0), MAX_DEPOSIT, gas=1_000_000)
    assert m.fn("weights").decode(await client.eth_call(system.model, m.encode("weights", beyond))) == 0
    # The last index inside the model is fine.
    assert await revert_reason(client, system, dev[0].address, system.trainer,
                               t.encode("predict", [*GOOD, N_FEATURES - 1])) is None


# ---- a shard with an agent sending every bad input -------------------------------------------------

def core_for(anvil, chain_id, compiled, system, specs) -> ShardCore:
    return ShardCore(ShardConfig(
        shard_id=0, rpc_url=anvil.url, chain_id=chain_id, seed=5, trainer=system.trainer,
        incentive=system.incentive, abis={n: compiled[n].abi for n in CONTRACT_NAMES}, cost_weight=COST_WEIGHT,
        refund_wait=60, block_time=1, agents=specs, data_handler=system.data_handler,
    ))


async def test_a_malformed_agent_is_refused_and_keeps_going(anvil, client, tx, compiled, dev, chain_id, driven):
    system = await deploy_small(client, tx, compiled)
    samples = [((2 * j, 2 * j + 10), 1) for j in range(4)]
    specs = [AgentSpec(0, "bad", "adversarial", {"attack": "malformed", "beyond_index": 10_000}, samples),
             AgentSpec(1, "honest", "honest", {"rate": 1.0, "max_in_flight": 2}, [((2 * j, 4), 1) for j in range(3)])]
    core = core_for(anvil, chain_id, compiled, system, specs)
    try:
        addresses = await core.start()
        funder = Transactor(client, dev[0], chain_id)
        for a in addresses:
            await funder.send(a, b"", 10**18)
        await set_mining(client, "driven")
        errors: list[str] = []
        for _ in range(40):  # 40 one-second blocks: the honest agent's refunds (60 s) stay out of it
            info = await latest(client)
            report = await core.tick(info)
            errors += report.errors
            await mine(client, info.timestamp + 1)
            if report.finished:
                break
        cols = await core.finalize((await latest(client)).number)
    finally:
        await core.close()
    assert errors == []  # nothing crashed the shard: every bad input ended in the ledger
    rows = [dict(zip(cols, vals)) for vals in zip(*cols.values())]
    bad = [r for r in rows if r["agent"] == 0]
    assert all(TxStatus(r["status"]).final for r in rows)
    reasons = Counter(r["reason"].split("(")[0] for r in bad if r["status"] == "reverted")
    assert reasons == {"NegativeFeatureIndex": 2, "FeatureOutOfRange": 1, "BadClassification": 1,
                       "ContributionNotFound": 1, "NotEnoughTimeHasPassed": 1}, bad
    refused = [r for r in bad if r["status"] == "dropped"]
    assert len(refused) == 1 and refused[0]["reason"].startswith("rejected at send"), refused
    assert refused[0]["gas_limit"] > 30_000_000  # the oversized add: more gas than a block holds
    # The index beyond the model reverts (test above); the good adds are included.
    included_adds = [r for r in bad if r["action"] == "add" and r["status"] == "included"]
    assert len(included_adds) == 1 + 3  # the first good add and the 3 other samples
    # after every probe the agent still sends and gets included
    last_probe = max(r["submitted_block"] for r in bad if r["status"] != "included")
    assert any(r["status"] == "included" and r["submitted_block"] > last_probe for r in bad)
    honest = [r for r in rows if r["agent"] == 1]
    assert {r["status"] for r in honest} == {"included"} and len(honest) == 3


# ---- a whole run: the summary counts the reverts by reason ----------------------------------------

RUN = """
name: malformed
seed: 3
chain: {mining: driven, block_time: 1s, gas_limit: 30_000_000, base_fee: 1 gwei}
dataset: {name: synthetic_sparse, samples: 200, features: 100, avg_length: 6}
incentive: {cost_weight: 1e9, refund_wait: 1h, owner_claim_wait: 2h, any_address_claim_wait: 3h}
agents:
  - {name: probes, policy: adversarial, count: 2, funding: 1 ether, samples_per_agent: 2,
     params: {attack: malformed, beyond_index: 5000}}
  - {policy: honest, count: 2, funding: 1 ether, samples_per_agent: 3, rate: 1/s}
schedule: {duration: 40 blocks, max_wall_time: 2m}
evaluation: {every: 20 blocks, spot_checks: 1}
outputs: {progress: false}
"""


def test_a_run_with_malformed_agents_completes_and_counts_reverts_by_reason(tmp_path: Path) -> None:
    import ray

    from orchestrator.run import Run
    from orchestrator.scenario import load_scenario_text

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        run_dir = Run(load_scenario_text(RUN, "malformed.yaml"), results_root=tmp_path, run_id="m",
                      progress=False).execute()
    finally:
        if started and ray.is_initialized():
            ray.shutdown()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed", summary.get("error")
    assert summary["transactions"]["all_final"]
    assert summary["reconciliation"]["ok"], summary["reconciliation"]
    reasons: Counter[str] = Counter()
    for reason, count in summary["revert_reasons"].items():
        reasons[reason.split("(")[0]] += count
    # two probing agents, each: negative index in an add and in predict, an index beyond the model,
    # label 2, a ghost report, an early refund
    assert reasons == {"NegativeFeatureIndex": 4, "FeatureOutOfRange": 2, "BadClassification": 2,
                       "ContributionNotFound": 2, "NotEnoughTimeHasPassed": 2}, summary["revert_reasons"]
    refused = sum(v for k, v in summary["drop_reasons"].items() if k.startswith("rejected at send"))
    assert refused == 2, summary["drop_reasons"]  # the oversized adds
    led = pq.read_table(run_dir / "ledger.parquet").to_pydict()
    honest = [s for s, g in zip(led["status"], led["group"]) if g != "probes"]
    assert honest and set(honest) == {"included"}
    probes_after = [s for s, g, a in zip(led["status"], led["group"], led["action"]) if g == "probes" and a == "add"]
    assert probes_after.count("included") >= 2 * 2  # each probing agent's good adds
