"""Arrival processes of any rate: no silent cap, slow agents skip the chain ahead, and a rate a
wallet cannot keep up with is warned about and kept as a backlog instead of being quietly lowered."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from agents.arrivals import Arrivals
from agents.policies.base import FINISHED, Mechanism, Observation, PolicyContext, Sample
from agents.policies.honest import HonestPolicy

DAY = 86_400


def test_one_a_day_is_expressible_and_gives_its_next_time():
    rng = np.random.default_rng(3)
    a = Arrivals(process="constant", rate=1 / DAY)
    assert a.draw(12, 12, rng) == 0
    # The next arrival is a day after the first draw's origin (the block before): a policy can wake then.
    assert a.next_time() == DAY
    assert a.draw(DAY - 1, 12, rng) == 0
    assert a.draw(DAY, 12, rng) == 1
    assert a.next_time() == 2 * DAY
    # A clock jump over days 2 to 11 releases their ten arrivals: nothing is capped.
    assert a.draw(11 * DAY, 12, rng) == 10


def test_slow_poisson_rate_is_met_over_long_jumps():
    rng = np.random.default_rng(5)
    a = Arrivals(process="poisson", rate=1 / 3600)
    a.draw(0, 12, rng)
    total = sum(a.draw(t, 12, rng) for t in range(7 * 86_400, 1001 * 7 * 86_400, 7 * 86_400))
    weeks = 1000
    assert abs(total / (weeks * 7 * 24) - 1) < 0.02  # one an hour, within 2%, across week-long jumps


def test_long_gaps_are_not_capped_for_fast_rates_either():
    rng = np.random.default_rng(1)
    a = Arrivals(process="constant", rate=2.0)
    a.draw(0, 1, rng)
    assert a.draw(3600, 1, rng) == 7200


def test_rate_faster_than_the_wallet_warns_and_keeps_a_backlog(caplog):
    rng = np.random.default_rng(1)
    a = Arrivals(process="constant", rate=10.0, agent="agent 4")
    with caplog.at_level(logging.DEBUG, logger="dcai.arrivals"):
        sent = [a.draw(t, 1, rng, limit=4) for t in range(1, 11)]
    assert sent == [4] * 10
    assert a.backlog == 60 and a.max_backlog == 60
    assert a.next_time() is None  # due arrivals wait: the agent must act in the next block
    assert len(a.warnings) == 1 and "constant arrivals at 10/s" in a.warnings[0]  # for the run, once
    backlog = [r for r in caplog.records if "arrival backlog" in r.getMessage()]
    assert len(backlog) == 1 and "agent 4" in backlog[0].getMessage()  # which agent: the debug log
    # Once the rate falls (a phase at load 0), the backlog drains at the wallet's pace.
    assert [a.draw(t, 1, rng, load=0.0, limit=25) for t in range(11, 15)] == [25, 25, 10, 0]


def test_load_change_rescales_the_pending_arrival():
    rng = np.random.default_rng(1)
    a = Arrivals(process="constant", rate=1 / 100)
    a.draw(0, 0, rng)
    assert a.next_time() == 100
    a.draw(50, 0, rng, load=2.0)  # twice the rate: the 50 s left become 25
    assert a.next_time() == 75


def test_bad_rate_and_process_are_refused():
    with pytest.raises(ValueError, match="arrival rate"):
        Arrivals(rate=float("inf"))
    with pytest.raises(ValueError, match="arrival process"):
        Arrivals.from_params({"arrival": "weekly"})


def _obs(t: int, in_flight: int = 0) -> Observation:
    mech = Mechanism(kind="stakeable", cost_weight=10**12, refund_wait=DAY, owner_claim_wait=8 * DAY,
                     any_address_claim_wait=9 * DAY)
    return Observation(block=1, time=t, base_fee=10**9, block_time=12, mechanism=mech, last_update=0,
                       address="0xabc", in_flight=in_flight, spent=0, contributions=[], public=[])


def test_slow_honest_agent_wakes_at_its_next_arrival():
    samples = [Sample((i,), 1) for i in range(3)]
    p = HonestPolicy(PolicyContext(agent_id=0, rng=np.random.default_rng(0), samples=samples,
                                   params={"rate": 1 / DAY, "arrival": "constant"}))
    assert p.next_wake(_obs(12)) is None  # before its first draw it looks every block
    assert p.decide(_obs(12)) == []
    assert p.next_wake(_obs(12)) == DAY  # then the chain may skip a day
    acts = p.decide(_obs(DAY))
    assert len(acts) == 1
    assert p.next_wake(_obs(DAY, in_flight=1)) is None
    for t in (2 * DAY, 3 * DAY):
        p.decide(_obs(t))
    assert p._next == 3 and p.next_wake(_obs(3 * DAY)) == FINISHED


def test_a_huge_rate_is_counted_at_once_not_one_by_one() -> None:
    """A million arrivals a second (the scale benchmark's 'add now') costs one draw, not a million
    loop turns, and still releases about rate x elapsed arrivals."""
    import numpy as np

    from agents.arrivals import Arrivals

    class Counting:
        """The generator, counting the random numbers drawn: one per arrival would be millions."""

        def __init__(self) -> None:
            self.rng, self.calls = np.random.default_rng(3), 0

        def __getattr__(self, name: str):
            self.calls += 1
            return getattr(self.rng, name)

    for process in ("poisson", "constant"):
        a = Arrivals(process=process, rate=1e6)
        rng = Counting()
        first = a.draw(1_000, 1, rng)
        later = a.draw(1_010, 1, rng)
        # The first gap, then per draw a count and the gap after it: not 64 gaps one by one first.
        assert rng.calls <= 6, rng.calls
        assert 0.9e6 < first < 1.1e6 and 0.9e7 < later < 1.1e7, (process, first, later)
        assert a.next_time() is not None and a.next_time() >= 1_010


def test_an_unmet_rate_is_said_once_per_agent_in_words_every_agent_shares():
    """The warning names the process, rate, load and block time, not the agent: a shard passes each
    distinct text on once, so a population sharing one rate gives one line."""
    import numpy as np

    from agents.arrivals import Arrivals

    said = []
    for name in ("agent 1", "agent 2"):
        a = Arrivals(process="constant", rate=2.0, agent=name)
        rng = np.random.default_rng(1)
        assert a.draw(100, 12, rng, limit=5) == 5 and a.backlog > 0
        a.draw(112, 12, rng, limit=5)  # still behind: nothing more to say
        assert len(a.warnings) == 1
        said.append(a.warnings[0])
    assert said[0] == said[1]
    assert said[0].startswith("arrival rate cannot be met: constant arrivals at 2/s (load 1) on 12 s blocks")
    calm = Arrivals(process="constant", rate=0.1)
    calm.draw(100, 12, np.random.default_rng(1), limit=5)
    assert calm.warnings == [] and calm.backlog == 0
