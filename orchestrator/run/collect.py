"""The end of a run: gather what the shards and the chain hold into a `RunResult` (whatever state
the run is in), check the books, and write the results folder from it."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import structlog

from agents.ledger import LEDGER_COLUMNS
from contracts.rpc import merge_stats

from .. import logs
from ..evaluator import MODEL_COLUMNS
from ..flows import FLOW_COLUMNS
from ..flows import table as contribution_flows
from ..incentives import ACCOUNT_COLUMNS, accounts
from ..incentives import to_columns as account_columns
from ..monitor import BLOCK_COLUMNS
from ..results import merge_columns, rows_to_columns, write_json, write_table
from ..summary import build_summary
from .ledger_stream import LedgerStream
from .state import RunResult
from .world import World, balances

log = structlog.get_logger("dcai.run")

CONTRIBUTION_COLUMNS = ["block", "tx_index", "log_index", "tx_hash", "author", "label", "added_time", "deposit",
                        "data"]
LOG_RANGE = 2_000  # blocks per eth_getLogs


def fill_static(world: World, result: RunResult) -> None:
    """What the world knows without asking the shards: the system, funding, node and model records
    (also for a bundle taken mid-run, e.g. at an invariant violation)."""
    client = world.client
    result.system, result.funding, result.start_balances = world.system, world.funding, world.start_balances
    result.managed_node = world.node is not None
    result.node_settings = world.node.settings if world.node is not None else None
    result.node_url = client.display_url if client is not None else None
    result.market = dict(world.mechanism.info) if world.mechanism is not None else {}
    if world.monitor is not None:
        result.blocks = list(world.monitor.records)
    if world.evaluator is not None:
        result.models = list(world.evaluator.records)
        result.test_samples = list(world.evaluator.samples)
        result.test_labels = [int(x) for x in world.evaluator.labels]


async def collect(world: World, result: RunResult, ledger: LedgerStream | None = None) -> None:
    """Pull ledgers and stats from the shards and the end balances from the chain into `result`.
    With `ledger` (streaming shards) the shards hand over only their last rows; the ledger is then
    read back from the log on disk, also when a shard cannot answer any more."""
    state, client, pool = result.state, world.client, world.pool
    fill_static(world, result)
    result.ledger = {name: [] for name in LEDGER_COLUMNS}
    result.contributions = {name: [] for name in CONTRIBUTION_COLUMNS}
    if not pool.shards:
        if ledger is not None:
            result.ledger = _from_log(ledger)
        return
    last = state.last_block
    if last < 0 and client is not None:
        try:
            last = await client.block_number()
        except Exception:  # noqa: BLE001 - node gone: shards settle with what they have
            last = 0
    try:
        parts = await pool.finalize(last)
        if ledger is not None:
            for part in parts:
                ledger.append(part)
            result.ledger = _from_log(ledger)
        else:
            result.ledger = merge_columns(parts, LEDGER_COLUMNS)
        state.shard_stats = await pool.stats()
        state.rpc["shards"] = merge_stats([s.get("rpc", {}) for s in state.shard_stats])
        agents = await pool.agent_summaries()
        addresses = [a["address"] for a in agents]
        if client is not None and world.start_balances:
            end = await balances(client, addresses, last)
            result.accounts = accounts(result.ledger, agents, world.start_balances, end, await _points(world, addresses,
                                                                                                        last))
        if client is not None and world.system is not None and world.mechanism is not None:
            holder = world.mechanism.deposit_holder(world.system)
            state.trainer_balance_end = (await balances(client, [holder], last)).get(holder)
        result.contributions = await _contributions(world, last)
    except Exception as e:  # noqa: BLE001 - a dead shard must not cost the rest of the results
        log.error("could not collect the ledger from every shard", error=f"{type(e).__name__}: {e}")
        state.tick_errors.append(logs.redact_text(f"ledger collection: {type(e).__name__}: {e}"))
        if ledger is not None and not result.ledger["tx_hash"]:
            result.ledger = _from_log(ledger)  # every row the ticks handed over is on disk


def _from_log(ledger: LedgerStream) -> dict[str, list[Any]]:
    ledger.close()
    cols = ledger.read()
    return {name: cols.get(name, []) for name in LEDGER_COLUMNS}


async def _points(world: World, addresses: list[str], tag: int) -> dict[str, int]:
    client, system = world.client, world.system
    assert client is not None and system is not None
    abi = system.incentive_abi
    if "numValid" not in {f.name for f in abi.functions.values()}:
        return {}
    fn = abi.fn("numValid")
    out: dict[str, int] = {}
    for i in range(0, len(addresses), 1000):
        chunk = addresses[i:i + 1000]
        res = await client.batch([("eth_call", [{"to": system.incentive, "data": "0x" + fn.encode(a).hex()},
                                                hex(tag)]) for a in chunk])
        out.update({a: int(fn.decode(bytes.fromhex(r[2:]))) for a, r in zip(chunk, res) if isinstance(r, str)})
    return out


async def _contributions(world: World, last: int) -> dict[str, list[Any]]:
    """Every contribution on chain (the public dataset the run built), from the trainer's AddData
    events in chain order: with the initial model it replays the model at any block."""
    cols: dict[str, list[Any]] = {name: [] for name in CONTRIBUTION_COLUMNS}
    client, system = world.client, world.system
    if client is None or system is None or last < 0:
        return cols
    abi = system.abis["CollaborativeTrainer"]
    topic = "0x" + abi.events_by_name["AddData"].topic.hex()
    for start in range(system.block, last + 1, LOG_RANGE):
        found = await client.call("eth_getLogs", {"address": system.trainer, "topics": [topic],
                                                  "fromBlock": hex(start),
                                                  "toBlock": hex(min(start + LOG_RANGE - 1, last))})
        for lg in found:
            _, a = abi.decode_log(lg)
            cols["block"].append(int(lg["blockNumber"], 16))
            cols["tx_index"].append(int(lg["transactionIndex"], 16))
            cols["log_index"].append(int(lg["logIndex"], 16))
            cols["tx_hash"].append(lg["transactionHash"])
            cols["author"].append(a["sender"])
            cols["label"].append(int(a["c"]))
            cols["added_time"].append(int(a["t"]))
            cols["deposit"].append(int(a["cost"]))
            cols["data"].append([int(x) for x in a["d"]])
    return cols


def check_reconciliation(result: RunResult) -> None:
    """A balance the ledger cannot explain means the books are wrong (or someone else moved
    ether): the run fails, loudly, whatever else went well. Results are still written."""
    bad = [a for a in result.accounts if not a.reconciled]
    if not bad:
        return
    state, first = result.state, bad[0]
    message = (f"reconciliation failed: {len(bad)} of {len(result.accounts)} agents' balance changes differ "
               f"from their ledgers (first: agent {first.agent} {first.address}: ledger "
               f"{first.ledger_flow} wei, chain {first.end_balance - first.start_balance} wei)")
    log.error(message, agents=[a.agent for a in bad][:20])
    if state.status in ("completed", "running"):
        state.status = "failed"
    state.error = f"{state.error}; {message}" if state.error else message


def write_results(result: RunResult) -> None:
    """The results folder's tables and summary.json, from the result alone."""
    check_reconciliation(result)
    d = result.run_dir
    try:
        n_blocks = write_table(d / "blocks.parquet", rows_to_columns(result.blocks, BLOCK_COLUMNS), BLOCK_COLUMNS)
        n_tx = write_table(d / "ledger.parquet", result.ledger, LEDGER_COLUMNS)
        write_table(d / "accuracy.parquet", rows_to_columns(result.models, MODEL_COLUMNS), MODEL_COLUMNS)
        write_table(d / "agents.parquet", account_columns(result.accounts), ACCOUNT_COLUMNS)
        write_table(d / "contributions.parquet", result.contributions, CONTRIBUTION_COLUMNS)
        write_table(d / "contribution_flows.parquet",
                    contribution_flows(result.ledger, result.contributions, result.accounts), FLOW_COLUMNS)
        summary = build_summary(
            scenario=result.scenario, run_id=result.run_id, state=asdict(result.state), blocks=result.blocks,
            models=result.models, ledger=result.ledger, system=result.system, funding=result.funding,
            node_url=result.node_url, managed_node=result.managed_node, accounts=result.accounts,
            baseline=baseline_records(result.baseline_dir), market=result.market or None,
            contributions=result.contributions, baseline_dir=result.baseline_dir,
        )
        if result.invariants is not None:
            summary["invariants"] = result.invariants
        write_json(d / "summary.json", summary)
        log.info("results written", blocks=n_blocks, transactions=n_tx, folder=str(d))
    except Exception:
        log.exception("could not write results")
        raise


def baseline_records(baseline_dir: Path | None) -> list[dict[str, Any]] | None:
    if baseline_dir is None or not (baseline_dir / "accuracy.parquet").exists():
        return None
    import pyarrow.parquet as pq

    table = pq.read_table(baseline_dir / "accuracy.parquet").to_pylist()
    summary_path = baseline_dir / "summary.json"
    start = json.loads(summary_path.read_text())["chain"]["start_block"] if summary_path.exists() else 0
    for row in table:
        row["offset"] = row["block"] - start
    return table
