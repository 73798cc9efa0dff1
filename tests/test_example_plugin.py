"""The worked plugin (examples/bonded_validation) from outside the packages: installed with pip into a
folder of its own, found only through its `dcai.mechanisms` entry point, it joins `dcai schema` and
`dcai validate`, compiles its own Solidity with the built-in sources, and its scenario runs end to
end through the `dcai` CLI on a real node with every agent's ledger reconciled to the chain, the
trainer's balance equal to the ether left locked, and no invariant violated."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "examples" / "bonded_validation"


def _pip_install(target: Path) -> None:
    """Install without touching the test environment: into `target` only, no dependencies. Offline
    first (the environment's own setuptools, which builds wheels from 70.1 on or with `wheel`
    installed); else with pip's isolated build environment (fetches setuptools from the index)."""
    base = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--disable-pip-version-check",
            "--target", str(target), str(PLUGIN)]
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
    _pip_install(target)
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
