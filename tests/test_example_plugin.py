"""The worked plugin (examples/bonded_validation) from outside the packages: installed with pip into a
folder of its own, found only through its `dcai.mechanisms` entry point, it joins `dcai schema` and
`dcai validate`, compiles its own Solidity with the built-in sources, and its scenario runs end to
end through the `dcai` CLI on a real node with every agent's ledger reconciled to the chain, the
trainer's balance equal to the ether left locked, and no invariant violated. Its contract's rules
are checked on their own on anvil (the module is loaded from its file: this process's entry points
stay as they are, so other tests in the session see the built-ins only)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import deploy_small, latest_timestamp, read_add_data_events, revert_reason, set_next_timestamp

from contracts.compiler import compile_contracts
from contracts.rpc import RpcClient
from contracts.transact import Transactor

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "examples" / "bonded_validation"


def _pip_install(target: Path, work: Path) -> None:
    """Install without touching the test environment: into `target` only, no dependencies. Offline
    first (the environment's own setuptools, which builds wheels from 70.1 on or with `wheel`
    installed); else with pip's isolated build environment (fetches setuptools from the index).
    Built from a copy: pip builds in the source folder, whose leftovers must not reach the checkout."""
    source = work / "bonded_validation"
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    base = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--disable-pip-version-check",
            "--target", str(target), str(source)]
    offline = subprocess.run([*base[:4], "--no-build-isolation", *base[4:]], capture_output=True, text=True,
                             timeout=300)
    if offline.returncode == 0:
        return
    isolated = subprocess.run(base, capture_output=True, text=True, timeout=300)
    if isolated.returncode != 0:
        pytest.fail("pip could not install the example plugin.\nwithout build isolation:\n"
                    f"{offline.stderr[-1500:]}\nwith it:\n{isolated.stderr[-1500:]}")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("plugin-site")
    _pip_install(target, tmp_path_factory.mktemp("plugin-build"))
    assert (target / "dcai_bonded" / "contracts" / "BondedValidation.sol").is_file()  # package data went along
    assert any(p.name.endswith(".dist-info") for p in target.iterdir())  # entry points need the metadata
    return target


def _env(plugin_site: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    paths = ([str(plugin_site)] if plugin_site else []) + [str(ROOT)]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def _dcai(plugin_site: Path | None, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=ROOT, env=_env(plugin_site),
                          capture_output=True, text=True, timeout=timeout)


def _scenario(site: Path) -> Path:
    return site / "dcai_bonded" / "scenario.yaml"  # the copy the package installed


def test_schema_and_validate_include_the_plugin(installed: Path, tmp_path: Path) -> None:
    schema = _dcai(installed, "schema")
    assert schema.returncode == 0, schema.stderr
    assert "bonded_validation" in schema.stdout and "challenge_share_bps" in schema.stdout
    ok = _dcai(installed, "validate", str(_scenario(installed)))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ok" in ok.stdout

    # The plugin's own validation, at the line of the key it blames.
    bad = tmp_path / "bad.yaml"
    bad.write_text(_scenario(installed).read_text().replace("owner_claim_wait: 2h", "owner_claim_wait: 30m"))
    refused = _dcai(installed, "validate", str(bad))
    out = refused.stdout + refused.stderr
    assert refused.returncode != 0 and "incentive.owner_claim_wait" in out and "refund_wait <= owner_claim_wait" in out

    # Without the plugin on the path the type is unknown: nothing in the packages names it.
    alone = _dcai(None, "validate", str(_scenario(installed)))
    assert alone.returncode != 0 and "incentive.type" in alone.stdout + alone.stderr


def test_plugin_scenario_runs_and_reconciles(installed: Path, tmp_path: Path) -> None:
    scenario = _scenario(installed)
    incentive = yaml.safe_load(scenario.read_text())["incentive"]
    run = _dcai(installed, "run", str(scenario), "--out", str(tmp_path), "--run-id", "bonded", "--no-progress")
    run_dir = tmp_path / "bonded"
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    s: dict[str, Any] = json.loads((run_dir / "summary.json").read_text())
    assert s["status"] == "completed", s["error"]

    by_action = s["transactions"]["by_action"]
    assert by_action["add"].get("included", 0) > 0
    assert by_action["refund"].get("included", 0) > 0  # validated bonds came back
    assert by_action["report"].get("included", 0) > 0  # flipped contributions were challenged

    # A challenge inside the window pays exactly the share of the bond the contract fixes; a take
    # after the last wait pays what is left, never more than one bond.
    bond = 10**15
    share = bond * int(incentive["challenge_share_bps"]) // 10_000
    led = pq.read_table(run_dir / "ledger.parquet").to_pydict()
    paid = [int(r) for a, st, r in zip(led["action"], led["status"], led["received"])
            if a == "report" and st == "included"]
    assert share in paid and all(0 < p <= bond for p in paid)
    adds = [int(d) for a, st, d in zip(led["action"], led["status"], led["deposit"]) if a == "add" and st == "included"]
    assert set(adds) == {bond}  # the flat bond, whatever the timing

    # Ether accounting: each agent's ledger equals its balance change on chain, and the trainer holds
    # exactly what the contributions leave locked.
    assert s["reconciliation"]["ok"], s["reconciliation"]
    assert s["reconciliation"]["reconciled"] == s["reconciliation"]["agents"] > 0
    st = s["settlement"]
    assert st["ok"] is True and st["trainer_balance_end"] == st["locked"]
    inv = s["invariants"]
    assert {"deposits_backed", "claims_once", "points_never_decrease"} <= set(inv["checked"])
    assert inv["violations_total"] == 0


# ---- the contract's rules on their own -------------------------------------------------------------

GOOD = [0, 2, 4]  # the conftest model predicts 1 for even features; one update cannot flip it
BAD = [1, 3]  # ...and 0 for odd ones
BOND = 10**15


def _plugin_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bonded_mechanism_under_test",
                                                  PLUGIN / "dcai_bonded" / "mechanism.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their string annotations through it
    spec.loader.exec_module(module)
    return module


async def _send_at(t: Transactor, ts: int, to: str, data: bytes, value: int = 0) -> dict[str, Any]:
    await set_next_timestamp(t.client, ts)
    return await t.send(to, data, value)


async def _reverts(client: RpcClient, system: Any, sender: str, data: bytes, error: str, value: int = 0) -> None:
    reason = await revert_reason(client, system, sender, system.trainer, data, value)
    assert reason is not None and reason.split("(")[0] == error, reason


async def _received(client: RpcClient, who: str, r: dict[str, Any]) -> int:
    """What a claim paid `who`: its balance change plus the fee it paid."""
    n = int(r["blockNumber"], 16)
    fee = int(r["gasUsed"], 16) * int(r["effectiveGasPrice"], 16)
    return await client.balance(who, n) - await client.balance(who, n - 1) + fee


async def test_bonded_validation_contract_rules(client, tx, dev, chain_id, solc_cache):
    mod = _plugin_module()
    compiled = compile_contracts(cache=solc_cache, extra_dirs=mod.BondedValidation.sources)
    spec = mod.BondedSpec(60, 120, 180, BOND, 2_500)
    system = await deploy_small(client, tx, compiled, incentive=spec)
    assert system.incentive_contract == "BondedValidation"
    T = system.abis["CollaborativeTrainer"]
    a, b, c, d = (Transactor(client, dev[i], chain_id) for i in (1, 2, 3, 4))
    t0 = await latest_timestamp(client) + 10

    # A flat bond whatever the timing: the excess comes back, an underpayment reverts.
    await _reverts(client, system, a.account.address, T.encode("addData", GOOD, 1), "DidNotPayEnough", BOND - 1)
    for who, ts, sample in ((a, t0, GOOD), (b, t0 + 1, BAD), (c, t0 + 2, BAD)):
        r = await _send_at(who, ts, system.trainer, T.encode("addData", sample, 1), 3 * BOND)
        assert read_add_data_events(r, T)[0]["cost"] == BOND
    assert await client.balance(system.trainer) == 3 * BOND

    def refund(sample: list[int], added: int) -> bytes:
        return T.encode("refund", sample, 1, added)

    def report(sample: list[int], added: int, author: Transactor) -> bytes:
        return T.encode("report", sample, 1, added, author.account.address)

    await _reverts(client, system, a.account.address, refund(GOOD, t0), "NotEnoughTimeHasPassed")
    await client.call("evm_mine", {"timestamp": t0 + 61})
    await _reverts(client, system, b.account.address, refund(BAD, t0 + 1), "ModelDisagrees")
    # Only challengers with a validated contribution of their own; never the author.
    await _reverts(client, system, a.account.address, report(BAD, t0 + 1, b), "NoValidatedContributions")
    await _reverts(client, system, b.account.address, report(BAD, t0 + 1, b), "CannotTakeOwnDeposit")
    r = await _send_at(a, t0 + 62, system.trainer, refund(GOOD, t0))
    assert await _received(client, a.account.address, r) == BOND
    await _reverts(client, system, a.account.address, report(GOOD, t0, a), "NothingLeftToClaim")

    # A challenge pays the fixed share, once per challenger; the deployer, then anyone, takes the rest.
    share = BOND * 2_500 // 10_000
    r = await _send_at(a, t0 + 63, system.trainer, report(BAD, t0 + 1, b))
    assert await _received(client, a.account.address, r) == share
    await _reverts(client, system, a.account.address, report(BAD, t0 + 1, b), "AlreadyClaimed")
    r = await _send_at(tx, t0 + 122, system.trainer, report(BAD, t0 + 1, b))
    assert await _received(client, tx.account.address, r) == BOND - share
    await _reverts(client, system, d.account.address, report(BAD, t0 + 2, c), "NoValidatedContributions")
    r = await _send_at(d, t0 + 183, system.trainer, report(BAD, t0 + 2, c))
    assert await _received(client, d.account.address, r) == BOND
    assert await client.balance(system.trainer) == 0  # every bond paid out exactly once

    m = system.incentive_abi
    for fn, args, want in (("numValid", (a.account.address,), 1), ("numChallenges", (a.account.address,), 1),
                           ("totalChallenges", (), 1), ("totalGoodDataCount", (), 1), ("totalSubmitted", (), 3)):
        assert m.fn(fn).decode(await client.eth_call(system.incentive, m.encode(fn, *args))) == want, fn
