"""The shard's wake schedule on a real node, driven block by block (no Ray): a tick steps only the
agents that are due (their wake has come, they act every block, or something of theirs is in
flight), a contribution made public re-evaluates asleep agents' wakes without stepping them, the
shard's next wake is the earliest stored one, and agents added to a started shard step next tick."""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar

import pytest
from conftest import deploy_small

from agents.policies.base import Action, AddData, Mechanism, Observation, Policy
from agents.shard import AgentSpec, BlockInfo, ShardConfig, ShardCore
from agents.shard_wake import WakeSchedule
from contracts.rpc import RpcClient
from contracts.transact import Transactor
from orchestrator.nodes import mine, set_mining

CONTRACT_NAMES = ("CollaborativeTrainer", "DataHandler", "Stakeable", "SparsePerceptron")
NAP = 100  # seconds a Sleeper sleeps after each step

STEPS: Counter[int] = Counter()  # agent id -> decide calls
WAKES: Counter[int] = Counter()  # agent id -> next_wake calls


class Sleeper(Policy):
    """Never sends; wants to act NAP seconds after each step. Watches the public list (horizon 0)."""

    name: ClassVar[str] = "sleeper"
    needs_public: ClassVar[bool] = True

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.wake_at: int | None = None

    def decide(self, obs: Observation) -> list[Action]:
        STEPS[self.agent_id] += 1
        self.wake_at = obs.time + NAP
        return []

    def next_wake(self, obs: Observation) -> int | None:
        WAKES[self.agent_id] += 1
        return self.wake_at


class LateSleeper(Sleeper):
    """A Sleeper that public contributions concern only a day after they are added."""

    def public_horizon(self, mechanism: Mechanism) -> int:
        return 86_400


class Watcher(Policy):
    """Acts every block (next_wake None), never sends."""

    name: ClassVar[str] = "watcher"

    def decide(self, obs: Observation) -> list[Action]:
        STEPS[self.agent_id] += 1
        return []


class Adder(Policy):
    """Adds its one sample in its first block, then waits for its receipt, then sleeps for good."""

    name: ClassVar[str] = "adder"

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.sent = False

    def decide(self, obs: Observation) -> list[Action]:
        STEPS[self.agent_id] += 1
        if self.sent:
            return []
        self.sent = True
        return [AddData(self.samples[0], value=obs.mechanism.max_deposit)]

    def next_wake(self, obs: Observation) -> int | None:
        return None if obs.in_flight or not self.sent else 2**62


def spec(i: int, cls: str) -> AgentSpec:
    return AgentSpec(i, cls.lower(), f"test_shard_wake:{cls}", {}, [((2 * (i % 30), 2 * ((i + 1) % 30)), 1)])


async def latest(client: RpcClient) -> BlockInfo:
    b = await client.get_block("latest")
    return BlockInfo(int(b["number"], 16), int(b["timestamp"], 16), int(b["baseFeePerGas"], 16))


@pytest.fixture
async def core(anvil, client, tx, compiled, chain_id):
    system = await deploy_small(client, tx, compiled)
    specs = ([spec(i, "Sleeper") for i in range(20)] + [spec(i, "LateSleeper") for i in range(20, 30)]
             + [spec(30, "Watcher"), spec(31, "Adder")])
    shard = ShardCore(ShardConfig(
        shard_id=0, rpc_url=anvil.url, chain_id=chain_id, seed=3, trainer=system.trainer,
        incentive=system.incentive, abis={name: compiled[name].abi for name in CONTRACT_NAMES},
        cost_weight=10**12, refund_wait=60, block_time=1, agents=specs, data_handler=system.data_handler))
    STEPS.clear()
    WAKES.clear()
    yield shard
    await shard.close()
    await set_mining(client, "auto")


async def tick(core: ShardCore, client: RpcClient, advance_s: int = 1):
    info = await latest(client)
    report = await core.tick(info)
    assert report.errors == [], report.errors
    await mine(client, info.timestamp + advance_s)
    return report


async def test_only_due_agents_step(core, client, dev, chain_id):
    addresses = await core.start()
    t = Transactor(client, dev[0], chain_id)
    await t.send(addresses[31], b"", 10**18)  # the adder pays for its add
    await set_mining(client, "driven")

    first = await tick(core, client)  # every agent steps once; the adder sends
    assert first.sent == 1 and all(STEPS[i] == 1 for i in range(32))
    assert first.next_wake is None  # the watcher acts every block

    second = await tick(core, client)  # the add is mined in between: its receipt comes in now
    assert second.included == 1
    assert [STEPS[i] for i in range(30)] == [1] * 30  # sleepers stay asleep
    assert STEPS[30] == 2 and STEPS[31] == 2  # the watcher every block; the adder for its receipt
    # The add became public: wakes that horizon 0 allows to move are evaluated again (not stepped);
    # the late sleepers' (a day's horizon) are not.
    assert all(WAKES[i] == 2 for i in range(20)) and all(WAKES[i] == 1 for i in range(20, 30))

    await tick(core, client, advance_s=NAP)  # a quiet block: only the watcher steps
    assert [STEPS[i] for i in range(32)] == [1] * 30 + [3, 2]
    await tick(core, client)  # NAP seconds after their first step: every sleeper is due
    assert [STEPS[i] for i in range(32)] == [2] * 30 + [4, 2]


async def test_next_wake_is_the_earliest_stored_and_added_agents_step(core, client):
    core.agents[30].policy.next_wake = lambda obs: 10**12  # type: ignore[method-assign] # the watcher sleeps too
    core.agents[31].policy.sent = True  # and the adder has nothing to send
    await core.start()
    await set_mining(client, "driven")
    info = await latest(client)
    report = await tick(core, client)
    assert report.next_wake == info.timestamp + NAP  # the sleepers', stored from their step
    assert sum(STEPS.values()) == 32

    addresses = await core.add_agents([spec(40, "Sleeper")])
    assert len(addresses) == 1 and core.agents[-1].slot == 32
    report = await tick(core, client)
    assert STEPS[40] == 1 and sum(STEPS.values()) == 33  # only the newcomer stepped
    assert report.next_wake == info.timestamp + NAP


def test_schedule_skips_stale_entries_and_steps_everyone_when_the_context_changes() -> None:
    s = WakeSchedule(3)
    assert s.due(0, ("a",), [], set()) == [0, 1, 2]  # first tick: everyone
    s.set(0, 10)
    s.set(1, 5)
    s.set(2, None)
    assert s.next_wake() is None
    assert s.due(4, ("a",), [], set()) == [2]
    s.set(2, 50)
    s.set(1, 20)  # moved later: its entry at 5 is stale
    assert s.next_wake() == 10
    assert s.due(6, ("a",), [], set()) == []
    assert s.due(10, ("a",), [], {2}) == [0, 2]  # due, and one with something in flight
    assert s.due(11, ("b",), [], set()) == [0, 1, 2]  # the load (say) changed: everyone
