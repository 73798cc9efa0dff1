"""`dcai replay BUNDLE`: re-execute a run's recorded transaction stream on a fresh node and say
whether it is identical.

The fresh anvil gets the recorded node settings (chain id, gas limit, base fee, genesis timestamp,
hardfork) with mining on demand and `--order fifo`, then the recorded initial state. Each recorded
block is rebuilt: its gas limit (if it changed) and base fee are set for the next block, its raw
transactions are sent in the recorded order (fifo keeps that order), and one block is mined at the
recorded timestamp. Setting the base fee explicitly matters: after `anvil_loadState` anvil derives
the next base fee differently from a node that mined genesis itself (measured: 0.875 gwei instead
of 1 gwei), and a chaos base-fee shock is not in the stream otherwise.

Compared per block: the transaction hashes in order, each receipt's status and gas used, the
block's gas used, base fee, timestamp, state root (anvil computes a real one: it changes with any
balance) and hash (which covers everything else). Then the key results, recomputed from the
replayed chain at the last block: every recorded balance, the model's accuracy on the bundled test
set through the exact twin, and receipts counted by status.

Exit status: 0 identical, 1 different, 2 bad input (a missing or corrupt bundle, named precisely).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.abi import ContractABI
from contracts.deploy import DeployedSystem
from contracts.rpc import RpcClient, RpcError

from . import bundle as B
from .node import AnvilNode, NodeError, NodeSettings
from .results import write_json

MAX_LISTED = 200  # differences kept in replay.json; the count is always exact


class BundleError(ValueError):
    """The bundle cannot be replayed as given: the message names the file and what is wrong."""


@dataclass
class Bundle:
    path: Path
    manifest: dict[str, Any]
    initial_state: bytes
    stream: list[dict[str, Any]]
    test_samples: list[list[Any]]
    test_labels: list[int]
    results: dict[str, Any]


@dataclass
class Diff:
    field: str
    recorded: Any
    replayed: Any
    block: int | None = None
    tx_index: int | None = None
    tx_hash: str | None = None

    def line(self) -> str:
        where = "results" if self.block is None else f"block {self.block}"
        if self.tx_index is not None:
            where += f" tx {self.tx_index}" + (f" ({self.tx_hash})" if self.tx_hash else "")
        return f"{where}: {self.field}: recorded {self.recorded!r}, replayed {self.replayed!r}"


@dataclass
class ReplayReport:
    bundle: str
    identical: bool = False
    blocks_compared: int = 0
    transactions_compared: int = 0
    differences: int = 0
    first_difference: dict[str, Any] | None = None
    diffs: list[dict[str, Any]] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0
    node: str = ""


# ---- reading a bundle --------------------------------------------------------------------------

def locate(path: Path) -> Path:
    """The bundle folder: the path itself, or `bundle/` inside a run folder."""
    if (path / B.MANIFEST).exists() or (path / B.INCOMPLETE).exists() or (path / B.INITIAL_STATE).exists():
        return path
    if (path / B.BUNDLE_DIR).is_dir():
        return path / B.BUNDLE_DIR
    if not path.exists():
        raise BundleError(f"{path}: no such file or folder")
    if not path.is_dir():
        raise BundleError(f"{path}: not a folder (give the bundle folder or the run folder holding bundle/)")
    raise BundleError(f"{path}: no replay bundle here (no {B.MANIFEST}, no {B.BUNDLE_DIR}/); "
                      "runs write one with outputs.bundle: true")


def _json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{path}: not valid JSON ({e})") from None


def _require(obj: Any, keys: dict[str, type | tuple[type, ...]], where: str) -> None:
    if not isinstance(obj, dict):
        raise BundleError(f"{where}: expected an object, found {type(obj).__name__}")
    for k, t in keys.items():
        if k not in obj:
            raise BundleError(f"{where}: missing the field {k!r}")
        if not isinstance(obj[k], t) or isinstance(obj[k], bool) and t is int:
            raise BundleError(f"{where}: field {k!r} should be {getattr(t, '__name__', t)}, "
                              f"found {type(obj[k]).__name__}")


_BLOCK_FIELDS: dict[str, type | tuple[type, ...]] = {
    "number": int, "hash": str, "timestamp": int, "base_fee": int, "gas_limit": int, "gas_used": int,
    "state_root": str, "txs": list}
_TX_FIELDS: dict[str, type | tuple[type, ...]] = {"hash": str, "raw": str, "status": int, "gas_used": int}


def _read_stream(path: Path) -> list[dict[str, Any]]:
    try:
        data = gzip.decompress(path.read_bytes())
    except FileNotFoundError:
        raise BundleError(f"{path}: missing") from None
    except (OSError, EOFError, zlib.error) as e:
        raise BundleError(f"{path}: not a complete gzip file ({e})") from None
    out: list[dict[str, Any]] = []
    for n, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}: line {n}"
        try:
            blk = json.loads(line)
        except json.JSONDecodeError as e:
            raise BundleError(f"{where}: not valid JSON ({e})") from None
        _require(blk, _BLOCK_FIELDS, where)
        for i, tx in enumerate(blk["txs"]):
            _require(tx, _TX_FIELDS, f"{where} (block {blk['number']}), transaction {i}")
        if out and blk["number"] != out[-1]["number"] + 1:
            raise BundleError(f"{where}: block {blk['number']} follows block {out[-1]['number']} "
                              "(the stream must hold consecutive blocks)")
        out.append(blk)
    return out


def load_bundle(path: Path) -> Bundle:
    folder = locate(path)
    manifest_path = folder / B.MANIFEST
    if not manifest_path.exists() and (folder / B.INCOMPLETE).exists():
        why = _json_file(folder / B.INCOMPLETE).get("error", "unknown")
        raise BundleError(f"{manifest_path}: missing; the run could not complete its bundle: {why}")
    manifest = _json_file(manifest_path)
    _require(manifest, {"format": str, "version": int, "node": dict, "genesis": dict, "blocks": dict},
             str(manifest_path))
    if manifest["format"] != B.FORMAT:
        raise BundleError(f"{manifest_path}: format {manifest['format']!r} is not {B.FORMAT!r}")
    if manifest["version"] > B.FORMAT_VERSION:
        raise BundleError(f"{manifest_path}: bundle version {manifest['version']} is newer than this dcai "
                          f"reads ({B.FORMAT_VERSION})")
    _require(manifest["node"], {"chain_id": int, "gas_limit": int, "base_fee": int, "accounts": int,
                                "balance_ether": int, "genesis_timestamp": int}, f"{manifest_path}: node")
    _require(manifest["genesis"], {"hash": str, "timestamp": int, "gas_limit": int}, f"{manifest_path}: genesis")
    files = manifest.get("files") or {}
    state_path = folder / files.get("initial_state", B.INITIAL_STATE)
    try:
        initial = state_path.read_bytes()
        json.loads(gzip.decompress(initial))  # anvil would reject it with a vaguer message
    except FileNotFoundError:
        raise BundleError(f"{state_path}: missing") from None
    except (OSError, EOFError, zlib.error, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{state_path}: not a gzip JSON state dump ({type(e).__name__}: {e})") from None
    stream_path = folder / files.get("stream", B.STREAM)
    stream = _read_stream(stream_path)
    declared = manifest["blocks"]
    if stream and stream[0]["number"] != 1:
        raise BundleError(f"{stream_path}: starts at block {stream[0]['number']}, not at block 1 (after genesis)")
    if len(stream) != declared.get("count"):
        raise BundleError(f"{stream_path}: holds {len(stream)} blocks, {manifest_path} says {declared.get('count')} "
                          "(truncated?)")
    test_path = folder / files.get("test_set", B.TEST_SET)
    test = _json_file(test_path)
    _require(test, {"samples": list, "labels": list}, str(test_path))
    if len(test["samples"]) != len(test["labels"]):
        raise BundleError(f"{test_path}: {len(test['samples'])} samples but {len(test['labels'])} labels")
    results_path = folder / files.get("results", B.RESULTS)
    results = _json_file(results_path)
    _require(results, {"block": int, "balances": dict, "transactions": dict}, str(results_path))
    return Bundle(folder, manifest, initial, stream, test["samples"], test["labels"], results)


# ---- replaying ---------------------------------------------------------------------------------

class ReplayNode(AnvilNode):
    """anvil with the recorded hardfork pinned (a newer anvil may default to a later one)."""

    def __init__(self, settings: NodeSettings, log_path: Path, hardfork: str | None):
        super().__init__(settings, log_path)
        self.hardfork = hardfork

    def command(self) -> list[str]:
        return super().command() + (["--hardfork", self.hardfork.lower()] if self.hardfork else [])


def _node_settings(manifest: dict[str, Any]) -> NodeSettings:
    node, genesis = manifest["node"], manifest["genesis"]
    return NodeSettings(gas_limit=genesis["gas_limit"], base_fee=node["base_fee"], accounts=node["accounts"],
                        balance_ether=node["balance_ether"], chain_id=node["chain_id"], order="fifo",
                        genesis_timestamp=genesis["timestamp"], no_mining=True)


class _Diffs:
    def __init__(self) -> None:
        self.items: list[Diff] = []
        self.count = 0

    def add(self, d: Diff) -> None:
        self.count += 1
        if len(self.items) < MAX_LISTED:
            self.items.append(d)


async def _replay_blocks(client: RpcClient, bundle: Bundle, diffs: _Diffs) -> tuple[int, int]:
    genesis = await client.get_block(0)
    assert genesis is not None
    if genesis["hash"] != bundle.manifest["genesis"]["hash"]:
        diffs.add(Diff("hash", bundle.manifest["genesis"]["hash"], genesis["hash"], block=0))
    gas_limit = int(genesis["gasLimit"], 16)
    blocks = txs = 0
    for rec in bundle.stream:
        n = rec["number"]
        if rec["gas_limit"] != gas_limit:
            await client.call("evm_setBlockGasLimit", hex(rec["gas_limit"]))
            gas_limit = rec["gas_limit"]
        await client.call("anvil_setNextBlockBaseFeePerGas", hex(rec["base_fee"]))
        # One call per transaction, in order: the pool's fifo order is arrival order, and anvil
        # does not keep the order within a JSON-RPC batch (a batched replay of the quickstart
        # swapped 5 transactions of one block).
        for i, t in enumerate(rec["txs"]):
            try:
                await client.call("eth_sendRawTransaction", t["raw"])
            except RpcError as e:
                diffs.add(Diff("accepted", True, f"rejected: {e.message}", n, i, t["hash"]))
        await client.call("evm_mine", {"timestamp": rec["timestamp"]})
        got = await client.get_block(n)
        receipts = await client.call("eth_getBlockReceipts", hex(n))
        if got is None or receipts is None:
            diffs.add(Diff("block", "mined", "missing", n))
            continue
        # What did not make it into this block must not leak into the next one: keep blocks aligned.
        pool = await client.call("txpool_status")
        if int(pool["pending"], 16) + int(pool["queued"], 16):
            await client.call("anvil_dropAllTransactions")
        _compare_block(rec, got, receipts, diffs)
        blocks += 1
        txs += len(rec["txs"])
    return blocks, txs


def _compare_block(rec: dict[str, Any], got: dict[str, Any], receipts: list[dict[str, Any]], diffs: _Diffs) -> None:
    n = rec["number"]
    want = [t["hash"] for t in rec["txs"]]
    have = list(got["transactions"])
    if len(want) != len(have):
        diffs.add(Diff("transaction count", len(want), len(have), n))
    by_hash = {r["transactionHash"]: r for r in receipts}
    for i, t in enumerate(rec["txs"]):
        if i >= len(have):
            diffs.add(Diff("tx_hash", t["hash"], None, n, i, t["hash"]))
            continue
        if have[i] != t["hash"]:
            diffs.add(Diff("tx_hash", t["hash"], have[i], n, i, t["hash"]))
            continue
        r = by_hash[have[i]]
        for name, key in (("status", "status"), ("gas_used", "gasUsed")):
            if int(r[key], 16) != t[name]:
                diffs.add(Diff(f"receipt {name}", t[name], int(r[key], 16), n, i, t["hash"]))
    for h in have[len(want):]:
        diffs.add(Diff("tx_hash", None, h, n, have.index(h), h))
    for name, key, conv in (("gas_used", "gasUsed", int), ("base_fee", "baseFeePerGas", int),
                            ("timestamp", "timestamp", int), ("state_root", "stateRoot", str), ("hash", "hash", str)):
        value: Any = int(got.get(key, "0x0"), 16) if conv is int else got[key]
        if value != rec[name]:
            diffs.add(Diff(name, rec[name], value, n))


async def _key_results(client: RpcClient, bundle: Bundle) -> dict[str, Any]:
    rec = bundle.results
    last = rec["block"]
    out: dict[str, Any] = {"block": last}
    out["balances"] = await B.balances(client, sorted(rec["balances"]), last)
    model = bundle.manifest.get("model")
    if model and bundle.test_samples:
        system = DeployedSystem(trainer="", data_handler="", incentive="", model=model["address"], deployer="",
                                block=0, n_features=int(model["n_features"]), gas_used=0, transactions=0,
                                abis={model["contract"]: ContractABI(model["abi"])},
                                model_contract=model["contract"])
        out["accuracy"] = await B.accuracy(client, system, bundle.test_samples, bundle.test_labels, last)
    else:
        out["accuracy"] = None
    # Receipts by status, from the replayed chain.
    stream_replayed = []
    senders: dict[str, tuple[str, str | None]] = {}
    for start in range(1, last + 1, 50):
        numbers = list(range(start, min(start + 50, last + 1)))
        rs = await client.batch([("eth_getBlockReceipts", [hex(n)]) for n in numbers])
        for part in rs:
            if isinstance(part, RpcError) or part is None:
                continue
            stream_replayed.append({"txs": [{"hash": r["transactionHash"], "status": int(r["status"], 16)}
                                            for r in part]})
            senders.update({r["transactionHash"]: (r["from"], r.get("to")) for r in part})
    agents = {a.lower() for a in rec.get("agents", [])}
    out["transactions"] = {"all": B.receipt_counts(stream_replayed),
                           "agents": B.receipt_counts(stream_replayed, senders, agents)}
    return out


def _compare_results(recorded: dict[str, Any], replayed: dict[str, Any], diffs: _Diffs) -> None:
    for addr, wei in sorted(recorded["balances"].items()):
        got = replayed["balances"].get(addr)
        if got != wei:
            diffs.add(Diff(f"balance of {addr}", wei, got))
    if recorded.get("accuracy") != replayed.get("accuracy"):
        diffs.add(Diff("accuracy", recorded.get("accuracy"), replayed.get("accuracy")))
    for group in ("all", "agents"):
        want = recorded["transactions"].get(group)
        have = replayed["transactions"].get(group)
        if want != have:
            diffs.add(Diff(f"transactions.{group} by status", want, have))


async def replay_bundle(bundle: Bundle, work_dir: Path) -> ReplayReport:
    report = ReplayReport(bundle=str(bundle.path))
    t0 = time.perf_counter()
    node = ReplayNode(_node_settings(bundle.manifest), work_dir / "replay-anvil.log",
                      bundle.manifest["node"].get("hardfork"))
    url = await asyncio.to_thread(node.start)
    diffs = _Diffs()
    try:
        async with RpcClient(url, timeout_s=120) as client:
            report.node = await client.call("web3_clientVersion")
            await client.call("anvil_loadState", "0x" + bundle.initial_state.hex())
            report.blocks_compared, report.transactions_compared = await _replay_blocks(client, bundle, diffs)
            report.results = await _key_results(client, bundle)
            _compare_results(bundle.results, report.results, diffs)
    finally:
        await asyncio.to_thread(node.stop)
    report.wall_s = time.perf_counter() - t0
    report.differences = diffs.count
    report.diffs = [vars(d) | {"text": d.line()} for d in diffs.items]
    report.first_difference = report.diffs[0] if report.diffs else None
    report.identical = diffs.count == 0
    return report


def run_replay(path: Path) -> ReplayReport:
    """Load and replay a bundle; raises BundleError on bad input."""
    bundle = load_bundle(path)
    with tempfile.TemporaryDirectory(prefix="dcai-replay-") as tmp:
        try:
            return asyncio.run(replay_bundle(bundle, Path(tmp)))
        except NodeError as e:
            raise BundleError(f"could not start the replay node: {e}") from None
        except RpcError as e:
            # A bundle whose initial state or settings the node refuses is bad input, not a difference.
            raise BundleError(f"{bundle.path}: the replay node refused it: {e}") from None


# ---- re-running from the seed ------------------------------------------------------------------

def _as_node_block(rec: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A bundle's block record in the shape the node answers, so one comparison serves both."""
    block = {"transactions": [t["hash"] for t in rec["txs"]], "gasUsed": hex(rec["gas_used"]),
             "baseFeePerGas": hex(rec["base_fee"]), "timestamp": hex(rec["timestamp"]),
             "stateRoot": rec["state_root"], "hash": rec["hash"]}
    receipts = [{"transactionHash": t["hash"], "status": hex(t["status"]), "gasUsed": hex(t["gas_used"])}
                for t in rec["txs"]]
    return block, receipts


def compare_bundles(recorded: Bundle, other: Bundle) -> _Diffs:
    diffs = _Diffs()
    if recorded.manifest["genesis"]["hash"] != other.manifest["genesis"]["hash"]:
        diffs.add(Diff("hash", recorded.manifest["genesis"]["hash"], other.manifest["genesis"]["hash"], block=0))
    for rec, got in zip(recorded.stream, other.stream):
        _compare_block(rec, *_as_node_block(got), diffs)
    if len(recorded.stream) != len(other.stream):
        diffs.add(Diff("blocks", len(recorded.stream), len(other.stream)))
    _compare_results(recorded.results, other.results, diffs)
    return diffs


def rerun_bundle(bundle: Bundle, results_root: Path) -> ReplayReport:
    """Run the bundle's scenario again from its seed (driven runs are reproducible) and compare the
    stream it produces with the recorded one."""
    from .run import Run, check_policies
    from .scenario import Scenario

    if bundle.manifest["node"].get("mining") != "driven":
        raise BundleError(f"{bundle.path / B.MANIFEST}: --rerun needs a driven run (chain.mining: driven); an "
                          "interval run's blocks depend on wall-clock timing, so a re-run cannot match it")
    scenario_data = bundle.manifest.get("scenario")
    try:
        scenario = Scenario.model_validate(scenario_data)
        check_policies(scenario, str(bundle.path / B.MANIFEST))
    except Exception as e:  # noqa: BLE001 - any reason the scenario cannot load is bad input here
        raise BundleError(f"{bundle.path / B.MANIFEST}: its scenario does not load: {e}") from None
    scenario = scenario.model_copy(update={"outputs": scenario.outputs.model_copy(
        update={"bundle": True, "progress": False, "dir": str(results_root)})})
    t0 = time.perf_counter()
    run_dir = Run(scenario, results_root=results_root, run_id="rerun", progress=False).execute()
    other = load_bundle(run_dir)
    diffs = compare_bundles(bundle, other)
    report = ReplayReport(bundle=str(bundle.path), identical=diffs.count == 0,
                          blocks_compared=min(len(bundle.stream), len(other.stream)),
                          transactions_compared=sum(len(b["txs"]) for b in bundle.stream[: len(other.stream)]),
                          differences=diffs.count, diffs=[vars(d) | {"text": d.line()} for d in diffs.items],
                          results=other.results, wall_s=time.perf_counter() - t0,
                          node=other.manifest["node"].get("client_version", ""))
    report.first_difference = report.diffs[0] if report.diffs else None
    return report


# ---- the command -------------------------------------------------------------------------------

def _summary_line(r: ReplayReport) -> str:
    res = r.results
    acc = f", accuracy {res['accuracy']:.4f}" if res.get("accuracy") is not None else ""
    counts = res.get("transactions", {}).get("all", {})
    return (f"{r.blocks_compared} blocks, {r.transactions_compared} transactions "
            f"({counts.get('success', 0)} succeeded, {counts.get('reverted', 0)} reverted), "
            f"{len(res.get('balances', {}))} balances{acc}; {r.wall_s:.1f} s")


def cmd_replay(args: argparse.Namespace) -> int:
    path = Path(args.bundle)
    try:
        if args.rerun:
            bundle = load_bundle(path)
            if args.rerun_dir:
                report = rerun_bundle(bundle, Path(args.rerun_dir))
            else:
                with tempfile.TemporaryDirectory(prefix="dcai-rerun-") as tmp:
                    report = rerun_bundle(bundle, Path(tmp))
        else:
            report = run_replay(path)
    except BundleError as e:
        print(f"dcai replay: {e}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(report.bundle) / ("rerun.json" if args.rerun else "replay.json")
    write_json(out, vars(report) | {"mode": "rerun" if args.rerun else "replay"})
    what = "re-run" if args.rerun else "replay"
    if report.identical:
        print(f"{what} of {report.bundle}: identical ({_summary_line(report)})")
    else:
        print(f"{what} of {report.bundle}: DIFFERENT: {report.differences} difference(s) "
              f"({_summary_line(report)})")
        for d in report.diffs[: args.show]:
            print(f"  {d['text']}")
        if report.differences > args.show:
            print(f"  ... {report.differences - args.show} more in {out}")
    print(f"report: {out}")
    return 0 if report.identical else 1


def build_replay_parser(sub: Any) -> None:
    p = sub.add_parser("replay", help="re-execute a run's replay bundle on a fresh node and compare")
    p.add_argument("bundle", help="the bundle folder, or the run folder holding bundle/")
    p.add_argument("--out", default=None, help="where to write replay.json (default: inside the bundle folder)")
    p.add_argument("--show", type=int, default=10, help="differences to print (all are in replay.json)")
    p.add_argument("--rerun", action="store_true",
                   help="instead: run the scenario again from its seed (driven runs) and diff the stream it produces")
    p.add_argument("--rerun-dir", default=None,
                   help="with --rerun: keep the new run's results folder under this folder")
    p.set_defaults(func=cmd_replay)
