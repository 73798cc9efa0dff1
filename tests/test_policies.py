"""Policies decide on hand-built observations: no chain needed, every rule checked directly."""

from __future__ import annotations

import numpy as np
import pytest

from agents.arrivals import Arrivals
from agents.policies.base import (
    AddData,
    Contribution,
    ContributionState,
    Mechanism,
    Observation,
    PolicyContext,
    PolicyError,
    PredictTx,
    PublicContribution,
    Refund,
    Report,
    Sample,
    resolve_policy,
)

ME = "0x" + "11" * 20
OTHER = "0x" + "22" * 20
GWEI = 10**9
STAKE = Mechanism("stakeable", cost_weight=10**12, refund_wait=86_400, owner_claim_wait=8 * 86_400,
                  any_address_claim_wait=9 * 86_400)
POINTS = Mechanism("points", cost_weight=0, refund_wait=3_600, owner_claim_wait=3_600, any_address_claim_wait=3_600)


def policy(name: str, params: dict | None = None, samples: list[Sample] | None = None, seed: int = 0):
    cls = resolve_policy(name)
    return cls(PolicyContext(1, np.random.default_rng(seed), params or {}, samples or []))


def obs(**kw) -> Observation:
    base = dict(block=100, time=1_000_000, base_fee=GWEI, block_time=1, mechanism=STAKE, last_update=999_000,
                address=ME, in_flight=0, spent=0, contributions=[], public=[])
    base.update(kw)
    return Observation(**base)


def samples(n: int, label: int = 1) -> list[Sample]:
    return [Sample((i, i + 10, i + 20), label) for i in range(n)]


# ---- honest ----------------------------------------------------------------------------------


def test_honest_adds_true_labels_and_refunds_when_model_agrees():
    p = policy("honest", {"rate": 5.0, "arrival": "constant"}, samples(3, label=0))
    acts = p.decide(obs())
    adds = [a for a in acts if isinstance(a, AddData)]
    assert [a.sample.label for a in adds] == [0, 0, 0] and all(a.value == STAKE.max_deposit for a in adds)
    mine = [Contribution(0, (1, 2), 1, ContributionState.ADDED, added_time=900_000, deposit=5)]
    o = obs(contributions=mine)
    assert (1, 2) in p.wants(o).predictions
    o.predictions[(1, 2)] = 1
    o.claimable[(ME, 900_000, 1, (1, 2))] = 5
    assert Refund(0) in p.decide(o)
    o2 = obs(contributions=[Contribution(0, (1, 2), 1, ContributionState.ADDED, added_time=999_990, deposit=5)])
    assert not p.wants(o2).predictions  # the refund wait has not passed


def test_honest_does_not_refund_when_model_disagrees():
    p = policy("honest")
    o = obs(contributions=[Contribution(0, (1, 2), 1, ContributionState.ADDED, added_time=900_000, deposit=5)])
    p.wants(o)
    o.predictions[(1, 2)] = 0
    o.claimable[(ME, 900_000, 1, (1, 2))] = 5
    assert not any(isinstance(a, (Refund, Report)) for a in p.decide(o))


def test_unknown_parameter_is_an_error():
    with pytest.raises(PolicyError, match="unknown parameter; did you mean 'rate'"):
        policy("honest", {"rat": 1})


# ---- greedy ----------------------------------------------------------------------------------


def rival(age_s: int, deposit: int = 10**16, label: int = 1, author: str = OTHER) -> PublicContribution:
    return PublicContribution(author, (5, 6, 7), label, 1_000_000 - age_s, deposit, 50)


def test_greedy_declines_an_unprofitable_contribution():
    p = policy("greedy", {"rate": 10.0, "arrival": "constant", "value_per_valid": 0}, samples(1))
    o = obs(last_update=1_000_000)  # someone just added: the deposit is at its highest
    o.predictions[samples(1)[0].data] = 1  # the model agrees: the refund is likely, but worth nothing
    assert not any(isinstance(a, AddData) for a in p.decide(o))


def test_greedy_contributes_when_it_pays():
    p = policy("greedy", {"rate": 10.0, "arrival": "constant", "value_per_valid": 10**17}, samples(1))
    o = obs(last_update=900_000)  # a cheap moment
    o.predictions[samples(1)[0].data] = 1
    assert any(isinstance(a, AddData) for a in p.decide(o))


def test_greedy_takes_a_winnable_deposit_with_a_higher_tip():
    p = policy("greedy")
    c = rival(age_s=3 * 86_400)
    o = obs(public=[c], num_valid=1, total_good=2)
    w = p.wants(o)
    assert c in w.claimable and c.data in w.predictions and w.num_valid
    o.claimable[c.key] = c.deposit
    o.predictions[c.data] = 0  # the model now rejects it
    reports = [a for a in p.decide(o) if isinstance(a, Report)]
    assert len(reports) == 1 and reports[0].target == c
    assert p.reward_of(o, c) == c.deposit * 1 // 2
    assert reports[0].tip is not None and reports[0].tip > GWEI  # a valuable claim is raced for


def test_greedy_does_not_take_when_the_model_agrees_or_it_has_no_verified_data():
    c = rival(age_s=3 * 86_400)
    o = obs(public=[c], num_valid=1, total_good=2)
    o.claimable[c.key] = c.deposit
    o.predictions[c.data] = 1
    g = policy("greedy")
    g.wants(o)
    assert not any(isinstance(a, Report) for a in g.decide(o))
    o2 = obs(public=[c], num_valid=0, total_good=2)
    o2.claimable[c.key] = c.deposit
    o2.predictions[c.data] = 0
    g = policy("greedy")
    g.wants(o2)
    assert not any(isinstance(a, Report) for a in g.decide(o2))


def test_greedy_collects_everything_once_the_last_window_opens():
    # Its own contribution, ten days old: a refund if the model agrees (it also counts as verified),
    # else the whole remainder by a take-all report; someone else's the same, after the grace.
    mine = Contribution(0, (5, 6, 7), 1, ContributionState.ADDED, added_time=1_000_000 - 10 * 86_400, deposit=10**16)
    theirs = rival(age_s=10 * 86_400)
    own_key = (ME, mine.added_time, 1, mine.data)
    for agrees, expected in ((True, Refund), (False, Report)):
        g = policy("greedy")
        o = obs(contributions=[mine], public=[theirs], num_valid=0, total_good=0)
        w = g.wants(o)
        assert {c.key for c in w.claimable} == {own_key, theirs.key}
        o.claimable[own_key] = o.claimable[theirs.key] = 10**16
        o.predictions[mine.data] = 1 if agrees else 0
        acts = g.decide(o)
        assert [type(a) for a in acts] == [expected, Report]
        assert acts[1].target == theirs  # the model's view does not matter any more


def test_greedy_skips_a_take_whose_fee_exceeds_the_reward():
    c = rival(age_s=3 * 86_400, deposit=10**9)  # a dust deposit
    o = obs(public=[c], num_valid=1, total_good=1, base_fee=100 * GWEI)
    o.claimable[c.key] = c.deposit
    o.predictions[c.data] = 0
    g = policy("greedy")
    g.wants(o)
    assert not any(isinstance(a, Report) for a in g.decide(o))
    assert g.reasons()["fee above reward"] == 1
# ---- adversarial -----------------------------------------------------------------------------


def test_label_flip_adds_wrong_labels():
    p = policy("adversarial", {"attack": "label_flip", "rate": 3.0, "arrival": "constant"}, samples(3, label=1))
    adds = [a for a in p.decide(obs()) if isinstance(a, AddData)]
    assert len(adds) == 3 and all(a.sample.label == 0 for a in adds)


def test_targeted_labels_everything_as_the_target_class():
    data = [Sample((1,), 0), Sample((2,), 1), Sample((3,), 0)]
    p = policy("adversarial", {"attack": "targeted", "target_class": 1, "rate": 3.0, "arrival": "constant"}, data)
    adds = [a for a in p.decide(obs()) if isinstance(a, AddData)]
    assert [(a.sample.data, a.sample.label) for a in adds] == [((1,), 1), ((3,), 1)]


def test_spam_sends_gas_burning_calls():
    p = policy("adversarial", {"attack": "spam", "spam_per_block": 4, "spam_indices": 50})
    acts = p.decide(obs())
    assert len(acts) == 4 and all(isinstance(a, PredictTx) and len(a.data) == 50 for a in acts)


def test_front_run_only_when_others_are_pending_and_with_a_high_tip():
    p = policy("adversarial", {"attack": "front_run", "front_run_tip": 30 * GWEI}, samples(2))
    assert p.wants(obs()).pool
    assert p.decide(obs(pool_pending=0)) == []
    acts = p.decide(obs(pool_pending=5))
    assert len(acts) == 1 and isinstance(acts[0], AddData) and acts[0].tip == 30 * GWEI


def test_grief_copies_with_flipped_labels_then_reports():
    p = policy("adversarial", {"attack": "grief", "warmup": 1}, samples(3))
    first = p.decide(obs())
    assert [type(a) for a in first] == [AddData]  # warm-up: an honest contribution of its own
    mine = [Contribution(0, samples(1)[0].data, 1, ContributionState.ADDED, added_time=800_000, deposit=5)]
    victim = rival(age_s=10)
    o = obs(contributions=mine, public=[victim], num_valid=1, total_good=3)
    copies = [a for a in p.decide(o) if isinstance(a, AddData)]
    assert [(a.sample.data, a.sample.label) for a in copies] == [(victim.data, 1 - victim.label)]
    # Three days later the same contribution is past its refund wait and the model now rejects it.
    o2 = obs(time=1_000_000 + 3 * 86_400, contributions=mine, public=[victim], num_valid=1, total_good=3)
    assert victim in p.wants(o2).claimable
    o2.claimable[victim.key] = victim.deposit
    o2.predictions[victim.data] = 1 - victim.label
    assert any(isinstance(a, Report) and a.target == victim for a in p.decide(o2))
    o3 = obs(time=1_000_000 + 3 * 86_400 + 1, contributions=mine, public=[victim], num_valid=1, total_good=3)
    assert victim not in p.wants(o3).claimable  # reported once only


def test_attacks_stop_when_the_budget_is_spent():
    for attack in ("label_flip", "targeted", "spam", "front_run", "grief"):
        p = policy("adversarial", {"attack": attack, "budget": 10**15, "rate": 5.0, "arrival": "constant"},
                   samples(5, label=0))
        assert p.decide(obs(spent=10**15, pool_pending=3)) == [], attack


def test_unknown_attack_is_an_error():
    with pytest.raises(PolicyError, match="unknown attack 'nuke'; expected one of: label_flip"):
        policy("adversarial", {"attack": "nuke"})
    with pytest.raises(PolicyError, match="did you mean 'label_flip'"):
        policy("adversarial", {"attack": "label_flp"})


# ---- karma seeker ----------------------------------------------------------------------------


def test_karma_seeker_submits_the_models_own_labels_and_near_duplicates():
    p = policy("karma_seeker", {"rate": 1.0, "arrival": "constant", "near_duplicates": 2}, samples(1, label=0))
    o = obs(mechanism=POINTS)
    w = p.wants(o)
    assert len(w.predictions) == 3  # the sample and two variants
    for d in w.predictions:
        o.predictions[d] = 1  # the model says 1, whatever the dataset says
    adds = [a for a in p.decide(o) if isinstance(a, AddData)]
    assert len(adds) == 3 and all(a.sample.label == 1 for a in adds)
    assert len({a.sample.data for a in adds}) == 3


def test_karma_seeker_validates_at_once_and_blocks_rivals():
    p = policy("karma_seeker", {"rate": 0.0001})
    mine = [Contribution(0, (1,), 1, ContributionState.ADDED, added_time=1_000_000 - 3_600, deposit=0)]
    r = rival(age_s=3_600)
    o = obs(mechanism=POINTS, contributions=mine, public=[r])
    w = p.wants(o)
    assert (1,) in w.predictions and r in w.claimed
    o.predictions[(1,)] = 1
    o.predictions[r.data] = 1 - r.label
    o.claimed[r.key] = False
    acts = p.decide(o)
    assert Refund(0) in acts and any(isinstance(a, Report) and a.target == r for a in acts)


# ---- arrivals and plugins --------------------------------------------------------------------


def test_arrival_processes():
    rng = np.random.default_rng(1)
    const = Arrivals(process="constant", rate=0.5)
    assert [const.draw(t, 1, rng) for t in range(1, 9)] == [0, 1, 0, 1, 0, 1, 0, 1]
    burst = Arrivals(process="burst", burst_size=7, burst_every=10)
    assert [burst.draw(t, 1, rng) for t in range(0, 21)].count(7) == 3
    pois = Arrivals(process="poisson", rate=2.0)
    draws = [pois.draw(t, 1, rng) for t in range(1, 2001)]
    assert 1.8 < np.mean(draws) < 2.2
    capped = Arrivals(process="constant", rate=1.0, max_gap=60)  # a cap only when one is asked for
    capped.draw(0, 1, rng)
    assert capped.draw(86_400, 1, rng) == 60
    with pytest.raises(ValueError):
        Arrivals.from_params({"arrival": "weekly"})


def test_policy_by_import_path_and_clear_errors():
    assert resolve_policy("plugin_policies:OneShotPolicy").name == "one_shot"
    with pytest.raises(PolicyError, match="cannot import"):
        resolve_policy("no_such_module_xyz:Thing")
    with pytest.raises(PolicyError, match="not a subclass"):
        resolve_policy("numpy:ndarray")
    with pytest.raises(PolicyError, match="unknown policy"):
        resolve_policy("nonexistent")


def test_roles_come_from_policies_and_groups_may_override() -> None:
    from agents.policies.base import group_role
    from orchestrator.scenario import load_scenario_text

    assert [group_role(p) for p in ("honest", "adversarial", "greedy", "karma_seeker")] == [
        "honest", "attacker", "opportunist", "opportunist"]
    # A plugin that declares no role is neither honest nor an attacker until its group says so.
    assert group_role("plugin_policies:OneShotPolicy") == "unspecified"
    sc = load_scenario_text(
        "name: roles\nschedule: {duration: 10}\nagents:\n"
        "  - {policy: 'plugin_policies:OneShotPolicy', count: 1, role: attacker}\n"
        "  - {policy: greedy, count: 1, role: honest}\n"
        "  - {policy: honest, count: 1}\n")
    assert [g.resolved_role() for g in sc.agents] == ["attacker", "honest", "honest"]


# ---- the claim loop, settlement, parameters (issue 11, 13) -----------------------------------


MARKET = Mechanism("prediction_market", cost_weight=0, refund_wait=0, owner_claim_wait=0, any_address_claim_wait=0,
                   stake=10**16)


def test_claim_moments_drive_next_wake_and_settlement_stops_adds():
    from agents.policies.base import FINISHED

    p = policy("honest", {"rate": 5.0, "arrival": "constant"}, samples(3))
    mine = Contribution(0, (1, 2), 1, ContributionState.ADDED, added_time=999_000, deposit=5)
    assert p.next_wake(obs(contributions=[mine])) is None  # samples left: every block
    settling = obs(contributions=[mine], settling=True)
    assert not any(isinstance(a, AddData) for a in p.decide(settling))
    # Its next claim moment: its own refund wait (a day after adding); then the take-all window.
    assert p.next_wake(settling) == 999_000 + STAKE.refund_wait
    later = obs(time=999_000 + STAKE.refund_wait, contributions=[mine], settling=True)
    p.wants(later)
    later.predictions[(1, 2)] = 0  # the model disagrees: look again at the next grid point
    later.claimable[(ME, 999_000, 1, (1, 2))] = 5
    assert p.decide(later) == []
    wake = p.next_wake(later)
    assert later.time < wake <= later.time + 6 * 3600
    mine.state = ContributionState.REFUNDED
    assert p.next_wake(obs(contributions=[mine], settling=True)) == FINISHED


def test_flippers_reclaim_and_take_all_their_own():
    p = policy("adversarial", {"attack": "label_flip"}, [])
    agreed = Contribution(0, (1,), 0, ContributionState.ADDED, added_time=1_000_000 - 2 * 86_400, deposit=7)
    old = Contribution(1, (2,), 0, ContributionState.ADDED, added_time=1_000_000 - 9 * 86_400, deposit=9)
    o = obs(contributions=[agreed, old])
    w = p.wants(o)
    assert {(1,), (2,)} <= w.predictions
    o.predictions.update({(1,): 0, (2,): 1})  # the final model agrees with the first flip only
    o.claimable[(ME, agreed.added_time, 0, (1,))] = 7
    o.claimable[(ME, old.added_time, 0, (2,))] = 9
    acts = p.decide(o)
    assert Refund(0) in acts
    assert any(isinstance(a, Report) and a.target.author == ME and a.target.data == (2,) for a in acts)


def test_greedy_in_a_market_acts_or_says_why_not():
    data = [Sample((1,), 1), Sample((2,), 1), Sample((3,), 0)]
    p = policy("greedy", {"rate": 1.0, "arrival": "constant", "max_deposit": "1 ether"}, data)
    acts = []
    for t, pred in ((1_000_000, 1), (1_000_001, 0), (1_000_002, 0)):
        o = obs(time=t, mechanism=MARKET)
        p.wants(o)
        o.predictions[data[(t - 1_000_000)].data] = pred
        acts += p.decide(o)
    # The sample the model already gets right earns nothing; the two it gets wrong can.
    assert [a.sample.data for a in acts if isinstance(a, AddData)] == [(2,)]
    assert p.reasons() == {"market: model already right": 2}


def test_front_run_without_txpool_warns_once_and_stops_blocking():
    p = policy("adversarial", {"attack": "front_run"}, samples(3))
    o = obs()
    assert p.wants(o).pool
    assert p.decide(o) == []  # pool_pending None: the node did not answer txpool_status
    assert len(p.warnings) == 1 and "txpool" in p.warnings[0]
    assert p.decide(obs()) == [] and len(p.warnings) == 1
    assert p.next_wake(obs()) is not None  # no longer asks for every block
    assert not p.wants(obs()).pool


def test_params_are_validated_with_suggestions():
    from agents.policies.base import validate_params

    assert validate_params("honest", {"rate": 0.1, "recheck_s": "12h", "give_up_s": "2d"}) == []
    assert validate_params("greedy", {"max_tip": "50 gwei", "value_per_valid": "0.01 ether"}) == []
    [(key, msg)] = validate_params("greedy", {"tip_shares": 0.2})
    assert key == "tip_shares" and "did you mean 'tip_share'" in msg
    [(key, msg)] = validate_params("adversarial", {"attack": "labelflip"})
    assert key == "attack" and "did you mean 'label_flip'" in msg
    [(key, msg)] = validate_params("adversarial", {"budget": "lots"})
    assert key == "budget" and "lots" in msg
    [(key, msg)] = validate_params("karma_seeker", {"rival_window_s": -5})
    assert key == "rival_window_s"
    assert validate_params("nonexistent", {})[0][0] == ""
    # A plugin without declared parameters takes anything.
    assert validate_params("plugin_policies:OneShotPolicy", {"whatever": 1}) == []


def test_plugin_import_errors_are_one_line(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "broken_syntax_plugin.py").write_text("def f(:\n    pass\n")
    (tmp_path / "raising_plugin.py").write_text("raise RuntimeError('no config\\nfound')\n")
    for module, expected in (("broken_syntax_plugin", "SyntaxError"), ("raising_plugin", "RuntimeError: no config found")):
        with pytest.raises(PolicyError) as e:
            resolve_policy(f"{module}:P")
        text = str(e.value)
        assert "\n" not in text and module in text and expected in text, text
