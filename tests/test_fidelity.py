"""The fidelity benchmark's off-chain replay (bounded: a few seconds), and a slow agent on the chain.

The replay plays the reference simulation's assumptions (free, instant transactions, floats), so its
books must balance to the float's precision and the same scenario must give the same figures; a chain
run with one contribution a day must skip the days in between instead of ticking through them."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest

from benchmarks.fidelity import mean_ci
from benchmarks.fidelity_replay import ReplayError, replay
from orchestrator.scenario import load_scenario_text

SMALL = """
name: fidelity-small
seed: 4
chain: {mining: driven, block_time: 12s}
model: {type: sparse perceptron, learning_rate: 0.5}
dataset: {name: synthetic_sparse, samples: 400, features: 200, avg_length: 10, noise: 0,
          init_train_fraction: 0.08, test_fraction: 0.2}
incentive: {type: stakeable, cost_weight: 1e13, refund_wait: 1d, owner_claim_wait: 9d, any_address_claim_wait: 9d}
agents:
  - {policy: honest, name: good, count: 1, funding: 10 ether, samples_per_agent: 30, rate: 6/h, arrival: constant,
     params: {mistake_rate: 0.0001}}
  - {policy: adversarial, name: bad, count: 1, funding: 10 ether, samples_per_agent: 5, rate: 1/h,
     params: {attack: label_flip}}
schedule: {duration: 100 blocks}
"""


@pytest.mark.parametrize("learner", ["contract", "reference"])
def test_replay_balances_its_books_and_is_deterministic(learner):
    sc = load_scenario_text(SMALL, "small.yaml")
    res = replay(sc, learner)
    again = replay(sc, learner)
    assert res.balances == again.balances and res.accuracy == again.accuracy
    assert res.adds == {0: 30, 1: 5}
    net = res.net()
    # Free transactions: every ether an agent lost is in the trainer or with the other agent.
    assert math.isclose(sum(net.values()) + res.locked_ether, 0.0, abs_tol=1e-12)
    total_deposits = sum(res.deposits.values())
    assert math.isclose(total_deposits, sum(res.refunds.values()) + sum(res.takes.values()) + res.locked_ether,
                        rel_tol=1e-12)
    # Everything is claimed in the end: the take-all window opens 9 days after the last add.
    assert res.locked_ether == pytest.approx(0.0, abs=1e-12)
    last_add = max(t for t, a, b in res.balances if b < res.start_balance[a]) if res.balances else 0
    assert 9 * 86_400 <= res.end_time - 0 and res.end_time <= 5 * 3600 + 9 * 86_400 + 3 * 3600 + last_add
    # The good agent adds every 10 minutes from the block before the first tick: at 588 s, 1188 s, ...
    good_adds = [t for t, a, _ in res.balances if a == 0][:3]
    assert good_adds == [588, 1188, 1788]
    assert all(0.0 <= acc <= 1.0 for _, acc in res.accuracy)
    # The first add pays the mechanism's price for the time since deployment's last update (none: the cap).
    assert res.deposits[0] > 0 and res.deposits[1] > 0


def test_replay_refuses_what_it_cannot_play():
    text = SMALL.replace("attack: label_flip", "attack: spam")
    with pytest.raises(ReplayError, match="label_flip agents only"):
        replay(load_scenario_text(text, "spam.yaml"))


def test_mean_ci_is_a_t_interval():
    c = mean_ci([1.0, 2.0, 3.0])
    assert c["mean"] == 2.0 and c["ci95"] == pytest.approx(4.302652729911275 * 1.0 / math.sqrt(3))
    assert mean_ci([5.0]) == {"mean": 5.0, "ci95": 0.0, "n": 1}


SLOW = """
name: slow-agent
seed: 2
chain: {mining: driven, block_time: 12s}
dataset: {samples: 200, features: 100, avg_length: 5, noise: 0}
incentive: {type: stakeable, cost_weight: 1e12, refund_wait: 1h, owner_claim_wait: 1h, any_address_claim_wait: 1h}
agents:
  - {policy: honest, count: 1, funding: 1 ether, samples_per_agent: 3, rate: 1/d, arrival: constant,
     params: {give_up_s: 2h, recheck_s: 1h}}
schedule: {duration: 400 blocks}
outputs: {progress: false}
"""


def test_one_contribution_a_day_skips_the_days_between(tmp_path, ray_cluster):
    from orchestrator.run import Run

    run_dir = Run(load_scenario_text(SLOW, "slow.yaml"), results_root=tmp_path, run_id="slow", progress=False,
                  report=False).execute()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed", summary["error"]
    ledger = pq.read_table(run_dir / "ledger.parquet").to_pandas()
    adds = ledger[ledger["action"] == "add"].sort_values("included_time")
    assert list(adds["status"]) == ["included"] * 3
    gaps = np.diff(adds["included_time"].astype(int).to_numpy())
    # A day apart, to within a block either way; and three days of chain time in a few dozen blocks.
    assert all(abs(g - 86_400) <= 12 for g in gaps), gaps
    blocks = pq.read_table(run_dir / "blocks.parquet").num_rows
    assert blocks < 60, blocks
