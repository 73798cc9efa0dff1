"""Replay bundles: a short driven run saves its bundle, `dcai replay` re-executes it on a fresh anvil
and finds it identical; a tampered copy gives a diff naming the block and field; a corrupt bundle
gives a precise error naming the file."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from contracts.signing import derive_key, dev_accounts
from orchestrator.cli import main as dcai
from orchestrator.replay import BundleError, run_replay
from orchestrator.run import Run
from orchestrator.scenario import ScenarioError, load_scenario_text

SEED = 5
SCENARIO = f"""
name: replay-test
seed: {SEED}
chain: {{mining: driven, block_time: 12s}}
dataset: {{samples: 300, features: 100, avg_length: 6}}
incentive: {{cost_weight: 1e12, refund_wait: 2m, owner_claim_wait: 4m, any_address_claim_wait: 5m}}
agents:
  - {{policy: honest, count: 3, funding: 1 ether, samples_per_agent: 4, rate: 0.2/s,
     params: {{recheck_s: 60, give_up_s: 600}}}}
schedule: {{duration: 30 blocks}}
evaluation: {{every: 10 blocks, spot_checks: 1}}
outputs: {{progress: false, bundle: true}}
telemetry: {{mqtt: none}}
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, ray_cluster) -> Path:
    out = Run(load_scenario_text(SCENARIO, "replay.yaml"), results_root=tmp_path_factory.mktemp("runs"),
              run_id="r", progress=False).execute()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed", summary["error"]
    return out


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(run_dir / "bundle", dst)
    (dst / "replay.json").unlink(missing_ok=True)
    return dst


def _stream(bundle: Path) -> list[dict]:
    return [json.loads(line) for line in gzip.decompress((bundle / "stream.jsonl.gz").read_bytes()).splitlines()]


def _write_stream(bundle: Path, blocks: list[dict]) -> None:
    text = "".join(json.dumps(b) + "\n" for b in blocks)
    (bundle / "stream.jsonl.gz").write_bytes(gzip.compress(text.encode()))


def test_replay_of_a_short_run_is_identical(run_dir, tmp_path):
    manifest = json.loads((run_dir / "bundle" / "manifest.json").read_text())
    report = run_replay(run_dir)  # the run folder works as well as the bundle folder
    assert report.identical, [d["text"] for d in report.diffs]
    # The comparison really covered the whole chain: every block after genesis, every transaction.
    summary = json.loads((run_dir / "summary.json").read_text())
    last = manifest["blocks"]["last"]
    assert last >= summary["chain"]["end_block"] >= 15
    assert report.blocks_compared == manifest["blocks"]["count"] == last
    n_tx = sum(len(b["txs"]) for b in _stream(run_dir / "bundle"))
    assert report.transactions_compared == manifest["blocks"]["transactions"] == n_tx
    # Deployment and funding (set-up) plus every agent transaction the ledger saw included.
    ledger = pq.read_table(run_dir / "ledger.parquet").to_pydict()
    included = {h for h, s in zip(ledger["tx_hash"], ledger["status"]) if s == "included"}
    adds = {h for h, a, s in zip(ledger["tx_hash"], ledger["action"], ledger["status"]) if a == "add" and s == "included"}
    assert len(adds) == 12 and len(included) >= 24  # 3 agents x 4 samples added, then claimed (refunds, takes)
    assert included <= {t["hash"] for b in _stream(run_dir / "bundle") for t in b["txs"]}
    assert n_tx > len(included)
    # Key results, recomputed from the replayed chain, equal the run's own.
    agents = pq.read_table(run_dir / "agents.parquet").to_pydict()
    assert len(agents["address"]) == 3
    for addr, end in zip(agents["address"], agents["end_balance"]):
        assert report.results["balances"][addr.lower()] == str(int(end))
    assert report.results["accuracy"] == summary["accuracy"]["end"]
    assert report.results["transactions"]["agents"] == {"success": len(included), "reverted": 0}
    assert report.wall_s < 30


def test_cli_replay_writes_report_and_exits_0(run_dir, tmp_path, capsys):
    out = tmp_path / "replay.json"
    assert dcai(["replay", str(run_dir / "bundle"), "--out", str(out)]) == 0
    assert "identical" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["identical"] and data["differences"] == 0 and data["blocks_compared"] > 0


def test_a_dropped_transaction_is_named_by_block(run_dir, tmp_path, capsys):
    bundle = _copy(run_dir, tmp_path)
    blocks = _stream(bundle)
    # The last block with a transaction in it, so nothing later hides the cause.
    target = max(i for i, b in enumerate(blocks) if b["txs"])
    dropped = blocks[target]["txs"].pop()
    _write_stream(bundle, blocks)
    assert dcai(["replay", str(bundle), "--out", str(tmp_path / "r.json")]) == 1
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    first = report["first_difference"]
    number = blocks[target]["number"]
    # The block replays without that transaction: less gas, another state, another hash.
    assert first["block"] == number and first["field"] == "gas_used"
    assert first["recorded"] - first["replayed"] == dropped["gas_used"]
    fields = {d["field"] for d in report["diffs"] if d["block"] == number}
    assert fields == {"gas_used", "state_root", "hash"}
    assert all(d["block"] is None or d["block"] >= number for d in report["diffs"])
    assert any(d["field"].startswith("balance of") for d in report["diffs"])  # its sender kept the fee
    assert f"block {number}: gas_used" in printed and "DIFFERENT" in printed


def test_a_changed_raw_transaction_is_named_by_block_and_tx(run_dir, tmp_path):
    bundle = _copy(run_dir, tmp_path)
    blocks = _stream(bundle)
    target = next(i for i, b in enumerate(blocks) if len(b["txs"]) >= 2)
    tx = blocks[target]["txs"][1]
    raw = bytearray.fromhex(tx["raw"][2:])
    raw[-1] ^= 0x01  # one bit of the signature's s: another sender (or none) signs it
    tx["raw"] = "0x" + raw.hex()
    _write_stream(bundle, blocks)
    report = run_replay(bundle)
    assert not report.identical
    first = report.first_difference
    assert first is not None and first["block"] == blocks[target]["number"] and first["tx_index"] == 1
    assert first["field"] in ("accepted", "tx_hash")


def test_an_altered_recorded_result_is_named(run_dir, tmp_path):
    bundle = _copy(run_dir, tmp_path)
    results = json.loads((bundle / "results.json").read_text())
    agent = results["agents"][0]
    results["balances"][agent] = str(int(results["balances"][agent]) + 1)
    results["accuracy"] = 0.123
    (bundle / "results.json").write_text(json.dumps(results))
    report = run_replay(bundle)
    assert not report.identical and report.differences == 2
    assert {d["field"] for d in report.diffs} == {f"balance of {agent}", "accuracy"}
    assert all(d["block"] is None for d in report.diffs)  # the chain itself replayed identically


def test_corrupt_or_missing_bundles_give_precise_errors(run_dir, tmp_path, capsys):
    bundle = _copy(run_dir, tmp_path)
    data = (bundle / "stream.jsonl.gz").read_bytes()
    (bundle / "stream.jsonl.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match=r"stream\.jsonl\.gz: not a complete gzip file"):
        run_replay(bundle)
    assert dcai(["replay", str(bundle)]) == 2
    assert "stream.jsonl.gz" in capsys.readouterr().err

    bundle = _copy(run_dir, tmp_path / "b")
    (bundle / "manifest.json").write_text("{ not json")
    with pytest.raises(BundleError, match=r"manifest\.json: not valid JSON"):
        run_replay(bundle)

    bundle = _copy(run_dir, tmp_path / "c")
    blocks = _stream(bundle)
    with_tx = next(i for i, b in enumerate(blocks) if b["txs"])
    del blocks[with_tx]["txs"][0]["raw"]
    _write_stream(bundle, blocks)
    with pytest.raises(BundleError, match=rf"stream\.jsonl\.gz: line {with_tx + 1} .*transaction 0: missing the "
                                          r"field 'raw'"):
        run_replay(bundle)

    bundle = _copy(run_dir, tmp_path / "d")
    (bundle / "initial_state.json.gz").unlink()
    with pytest.raises(BundleError, match=r"initial_state\.json\.gz: missing"):
        run_replay(bundle)

    assert dcai(["replay", str(tmp_path / "nowhere")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_rerun_from_the_seed_produces_the_same_stream(run_dir, tmp_path, capsys):
    out = tmp_path / "rerun.json"
    assert dcai(["replay", str(run_dir), "--rerun", "--rerun-dir", str(tmp_path), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    manifest = json.loads((run_dir / "bundle" / "manifest.json").read_text())
    assert report["identical"] and report["mode"] == "rerun"
    assert report["blocks_compared"] == manifest["blocks"]["count"]
    assert report["transactions_compared"] == manifest["blocks"]["transactions"]
    # The re-run wrote its own bundle: byte-identical stream (block hashes and state roots included).
    assert (tmp_path / "rerun" / "bundle" / "stream.jsonl.gz").read_bytes() == \
        (run_dir / "bundle" / "stream.jsonl.gz").read_bytes()
    assert "re-run of" in capsys.readouterr().out


def test_bundle_holds_no_private_key(run_dir):
    secrets = {"funder key": dev_accounts(1)[0].key_hex()[2:].lower(),
               **{f"agent {i} key": derive_key(SEED, i).hex() for i in range(3)}}
    for path in (run_dir / "bundle").iterdir():
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        text = (raw.decode("utf-8", errors="ignore") + raw.hex()).lower()
        for what, secret in secrets.items():
            assert secret not in text, f"bundle/{path.name} contains the {what}"


def test_bundles_are_off_by_default_and_refused_on_an_external_node():
    base = SCENARIO.replace(", bundle: true", "")
    assert load_scenario_text(base, "x.yaml").outputs.bundle is False
    external = SCENARIO.replace("chain: {mining: driven, block_time: 12s}",
                                "chain: {rpc_url: 'http://127.0.0.1:8545', funder_key_env: K}")
    with pytest.raises(ScenarioError, match="not supported on an external node"):
        load_scenario_text(external, "x.yaml")
