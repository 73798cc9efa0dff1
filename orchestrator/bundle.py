"""Replay bundles: what a run needs to be re-executed transaction for transaction.

A bundle is `<run_dir>/bundle/`:

* `initial_state.json.gz`: the node's state right after it started, before any transaction
  (`anvil_dumpState`, gzip JSON as anvil returns it). Written during set-up, so even a run that dies
  later keeps it.
* `stream.jsonl.gz`: one JSON line per block after genesis, in order: number, hash, parent hash,
  timestamp, base fee, gas limit, gas used, state root, and the block's signed transactions in
  order (raw bytes, hash, receipt status, gas used).
* `test_set.json`: the held-out samples and labels the run's accuracy is measured on, so the replay
  needs neither the dataset code nor the scenario's dataset settings to stay the same.
* `results.json`: the key results read from the chain at the last block (every touched account's
  balance, the model's accuracy through the exact twin, receipts by status), plus informational
  figures from the run (ledger statuses, the evaluator's last record).
* `manifest.json`: format and version, the resolved scenario (the redacted `scenario.json`), seed,
  node settings (chain id, gas limit, base fee, genesis, hardfork, anvil version, order), the model
  contract (address, ABI, size) and the block range. Written last: its presence means the bundle
  is complete.

No key is ever stored: signed transactions carry signatures, not keys, and the scenario is the
redacted copy. Only a node the run manages can be bundled (an external node's initial state cannot
be dumped and reloaded); the scenario schema rejects `outputs.bundle` with `chain.rpc_url`.
"""

from __future__ import annotations

import gzip
import json
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from contracts.rpc import RpcClient, RpcError
from contracts.twins import twin_from_chain

from .results import atomic_write_bytes, write_json

if TYPE_CHECKING:
    from .run.state import RunResult

log = structlog.get_logger("dcai.bundle")

BUNDLE_DIR = "bundle"
FORMAT = "dcai-replay-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
INITIAL_STATE = "initial_state.json.gz"
STREAM = "stream.jsonl.gz"
TEST_SET = "test_set.json"
RESULTS = "results.json"
INCOMPLETE = "incomplete.json"  # written instead of the manifest when gathering failed

_BLOCKS_PER_BATCH = 50  # block and receipt reads per JSON-RPC batch
_RAW_PER_BATCH = 500  # raw transaction reads per batch


def _check(results: Sequence[Any], what: str) -> None:
    for r in results:
        if isinstance(r, RpcError):
            raise r
        if r is None:
            raise RuntimeError(f"the node returned nothing for {what}")


async def capture_initial_state(client: RpcClient, bundle_dir: Path) -> None:
    """Dump the node's state now (call before any transaction)."""
    dump = await client.call("anvil_dumpState")
    # anvil answers with the hex of gzip-compressed JSON: stored as those bytes, loadable as they are.
    atomic_write_bytes(bundle_dir / INITIAL_STATE, bytes.fromhex(dump[2:] if dump.startswith("0x") else dump))


async def read_stream(client: RpcClient, first: int, last: int) -> list[dict[str, Any]]:
    """Every block in [first, last] with its ordered raw transactions and their receipts' outcome."""
    out: list[dict[str, Any]] = []
    for start in range(first, last + 1, _BLOCKS_PER_BATCH):
        numbers = range(start, min(start + _BLOCKS_PER_BATCH, last + 1))
        blocks = await client.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
        _check(blocks, f"blocks {numbers[0]}..{numbers[-1]}")
        receipts = await client.batch([("eth_getBlockReceipts", [hex(n)]) for n in numbers])
        _check(receipts, f"receipts of blocks {numbers[0]}..{numbers[-1]}")
        hashes = [h for b in blocks for h in b["transactions"]]
        raws: list[str] = []
        for i in range(0, len(hashes), _RAW_PER_BATCH):
            part = await client.batch([("eth_getRawTransactionByHash", [h]) for h in hashes[i:i + _RAW_PER_BATCH]])
            _check(part, "raw transactions")
            raws.extend(part)
        raw_of = dict(zip(hashes, raws))
        for b, rs in zip(blocks, receipts):
            by_hash = {r["transactionHash"]: r for r in rs}
            out.append({
                "number": int(b["number"], 16), "hash": b["hash"], "parent_hash": b["parentHash"],
                "timestamp": int(b["timestamp"], 16), "base_fee": int(b.get("baseFeePerGas", "0x0"), 16),
                "gas_limit": int(b["gasLimit"], 16), "gas_used": int(b["gasUsed"], 16),
                "state_root": b["stateRoot"],
                "txs": [{"hash": h, "raw": raw_of[h], "status": int(by_hash[h]["status"], 16),
                         "gas_used": int(by_hash[h]["gasUsed"], 16)} for h in b["transactions"]],
            })
    return out


def touched_addresses(receipts_from_to: dict[str, tuple[str, str | None]], extra: Iterable[str]) -> list[str]:
    """Every account a transaction came from or went to, and `extra`: the balances worth comparing."""
    addrs = {a.lower() for a in extra if a}
    for frm, to in receipts_from_to.values():
        addrs.add(frm.lower())
        if to:
            addrs.add(to.lower())
    return sorted(addrs)


async def senders_and_recipients(client: RpcClient, first: int, last: int) -> dict[str, tuple[str, str | None]]:
    """tx hash -> (from, to or the created contract), from the receipts."""
    out: dict[str, tuple[str, str | None]] = {}
    for start in range(first, last + 1, _BLOCKS_PER_BATCH):
        numbers = range(start, min(start + _BLOCKS_PER_BATCH, last + 1))
        receipts = await client.batch([("eth_getBlockReceipts", [hex(n)]) for n in numbers])
        _check(receipts, "receipts")
        for rs in receipts:
            for r in rs:
                out[r["transactionHash"]] = (r["from"], r.get("to") or r.get("contractAddress"))
    return out


async def balances(client: RpcClient, addresses: Sequence[str], block: int) -> dict[str, str]:
    """Wei balances as decimal strings (exact, JSON-safe)."""
    out: dict[str, str] = {}
    for i in range(0, len(addresses), 1000):
        chunk = list(addresses[i:i + 1000])
        res = await client.batch([("eth_getBalance", [a, hex(block)]) for a in chunk])
        _check(res, "balances")
        out.update({a: str(int(r, 16)) for a, r in zip(chunk, res)})
    return out


async def accuracy(client: RpcClient, system: Any, samples: Sequence[Sequence[Any]], labels: Sequence[int],
                   block: int) -> float | None:
    """The model's accuracy on the test set at `block`, through the exact twin read from the chain."""
    if not samples:
        return None
    import numpy as np

    twin = await twin_from_chain(client, system, block)
    pred = np.asarray(twin.predict(list(samples)))
    return float((pred == np.asarray(labels)).mean())


def receipt_counts(stream: Sequence[dict[str, Any]], senders: dict[str, tuple[str, str | None]] | None = None,
                   only: set[str] | None = None) -> dict[str, int]:
    c: Counter[str] = Counter()
    for b in stream:
        for t in b["txs"]:
            if only is not None and (senders is None or senders[t["hash"]][0].lower() not in only):
                continue
            c["success" if t["status"] == 1 else "reverted"] += 1
    return {"success": c["success"], "reverted": c["reverted"]}


def write_stream(path: Path, stream: Sequence[dict[str, Any]]) -> None:
    lines = "".join(json.dumps(b, separators=(",", ":")) + "\n" for b in stream)
    # mtime=0: the same stream gives the same bytes, so two bundles can be compared by digest.
    atomic_write_bytes(path, gzip.compress(lines.encode(), compresslevel=6, mtime=0))


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


async def save_bundle(run: RunResult, client: RpcClient | None) -> Path | None:
    """Gather the stream and the key results from the still-running node (`client`) and write the
    bundle. Never raises: a bundle must not cost a run its results (a failure leaves `incomplete.json`)."""
    bundle_dir = run.run_dir / BUNDLE_DIR
    try:
        return await _save(run, client, bundle_dir)
    except Exception as e:  # noqa: BLE001 - see the docstring
        log.exception("could not write the replay bundle")
        try:
            write_json(bundle_dir / INCOMPLETE, {"error": f"{type(e).__name__}: {e}", "run_status": run.state.status})
        except OSError:
            pass
        return None


async def _save(run: RunResult, client: RpcClient | None, bundle_dir: Path) -> Path:
    t0 = time.perf_counter()
    if client is None or run.node_settings is None:
        raise RuntimeError("no managed node: bundles need a node the run starts itself")
    if not (bundle_dir / INITIAL_STATE).exists():
        raise RuntimeError("the initial state was not captured (the run stopped before its node was ready)")
    # Interval mining would keep adding (empty) blocks while we read: freeze the chain first.
    await client.call("evm_setIntervalMining", 0)
    await client.call("evm_setAutomine", False)
    last = await client.block_number()
    genesis = await client.get_block(0)
    assert genesis is not None
    stream = await read_stream(client, 1, last)
    write_stream(bundle_dir / STREAM, stream)
    senders = await senders_and_recipients(client, 1, last)

    system = run.system
    agents = sorted(a.lower() for a in run.funding)
    extra = list(agents)
    if system is not None:
        extra += [a for a in system.addresses().values() if a]
    addresses = touched_addresses(senders, extra)
    samples: list[list[Any]] = []
    labels: list[int] = []
    if run.test_samples:
        samples = [[_plain(x) for x in s] for s in run.test_samples]
        labels = [int(x) for x in run.test_labels]
    write_json(bundle_dir / TEST_SET, {"samples": samples, "labels": labels})
    acc = await accuracy(client, system, samples, labels, last) if system is not None else None
    evaluated = run.models[-1] if run.models else None
    results = {
        "block": last,
        "balances": await balances(client, addresses, last),
        "agents": agents,
        "accuracy": acc,
        "transactions": {"all": receipt_counts(stream),
                         "agents": receipt_counts(stream, senders, set(agents))},
        # From the run's own records, for reading: the replay does not recompute these.
        "run": {"status": run.state.status, "ledger_by_status": dict(Counter(run.ledger.get("status", []))),
                "last_evaluation": asdict(evaluated) if evaluated is not None else None},
    }
    write_json(bundle_dir / RESULTS, results)

    info = await client.call("anvil_nodeInfo")
    scenario_path = run.run_dir / "scenario.json"
    scenario = json.loads(scenario_path.read_text()) if scenario_path.exists() else None
    settings = asdict(run.node_settings)
    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run_id": run.run_id,
        "run_status": run.state.status,
        "scenario": scenario,  # the redacted copy the run wrote: never the RPC URL's credentials
        "seed": run.scenario.seed,
        "node": {
            "client_version": await client.call("web3_clientVersion"),
            "hardfork": info.get("hardFork"),
            "order": settings["order"],
            "mining": run.scenario.chain.mining,
            "chain_id": settings["chain_id"],
            "gas_limit": settings["gas_limit"],
            "base_fee": settings["base_fee"],
            "accounts": settings["accounts"],
            "balance_ether": settings["balance_ether"],
            "genesis_timestamp": int(genesis["timestamp"], 16),
        },
        "genesis": {"hash": genesis["hash"], "state_root": genesis["stateRoot"],
                    "timestamp": int(genesis["timestamp"], 16),
                    "gas_limit": int(genesis["gasLimit"], 16),
                    "base_fee": int(genesis.get("baseFeePerGas", "0x0"), 16)},
        "blocks": {"first": 1, "last": last, "count": len(stream),
                   "transactions": sum(len(b["txs"]) for b in stream)},
        "model": None if system is None else {
            "contract": system.model_contract, "address": system.model, "n_features": system.n_features,
            "abi": system.model_abi.abi},
        "contracts": None if system is None else system.addresses(),
        "files": {"initial_state": INITIAL_STATE, "stream": STREAM, "test_set": TEST_SET, "results": RESULTS},
    }
    (bundle_dir / INCOMPLETE).unlink(missing_ok=True)
    write_json(bundle_dir / MANIFEST, manifest)
    size = sum(p.stat().st_size for p in bundle_dir.iterdir() if p.is_file())
    log.info("replay bundle written", blocks=len(stream), transactions=manifest["blocks"]["transactions"],
             bytes=size, seconds=round(time.perf_counter() - t0, 3), folder=str(bundle_dir))
    return bundle_dir
