"""Shared by the scenario tests (test_scenario*.py): a minimal and a full scenario, units, and the
error a text raises."""

from __future__ import annotations

import pytest

from orchestrator.scenario import ScenarioError, load_scenario_text

ETHER = 10**18
DAY = 86_400

MINIMAL = """\
name: minimal
agents:
  - policy: honest
    count: 2
schedule:
  duration: 100
"""

FULL = """\
name: full-demo_1.0
description: every section set explicitly
seed: 7
chain:
  mining: driven
  block_time: 2s
  gas_limit: 15 M
  base_fee: 2 gwei
  accounts: 20
  balance: 1000 ether
  chain_id: 1337
  order: fifo
model:
  type: sparse perceptron
  learning_rate: 0.25
  intercept: -1
dataset:
  name: breast_cancer
  samples: 569
  features: 30
  avg_length: 30
  noise: 0
  init_train_fraction: 0.1
  test_fraction: 0.3
incentive:
  type: stakeable
  cost_weight: 1e15
  refund_wait: 1d
  owner_claim_wait: 1w
  any_address_claim_wait: 9 days
agents:
  - policy: honest
    count: 3
    funding: 10 ether
    rate: 2/min
  - policy: my_pkg.bots:GreedyBot
    name: greedy
    count: 2
    funding: 0.1 ether
    samples_per_agent: 40
    rate: 12/h
    params: {greed: 0.9, targets: [1, 2]}
  - policy: my_pkg.bots:Spammer
    count: 1
schedule:
  duration: 600 blocks
  max_wall_time: 10 minutes
evaluation:
  every: 20 blocks
  test_size: 100
  spot_checks: 0
outputs:
  dir: out
  progress: false
"""


def _errors(text: str, source: str = "s.yaml") -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load_scenario_text(text, source)
    return info.value
