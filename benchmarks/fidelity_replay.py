"""The off-chain replay of a Deposit-Refund-Take scenario under the reference simulation's assumptions:
transactions are free and take effect the instant an agent acts, amounts are floats, nothing queues.

It plays the same agents as a chain run of the scenario: the same dataset, split, initial model,
samples per agent (dealt as the run deals them, `orchestrator/run/world.py`), the same arrival process with the same
random stream per agent (`agents.arrivals.Arrivals`, seeded from (seed, agent id)), the same labels
(honest: true, `mistake_rate` drawn from that stream; label_flip: the other class) and the same
mechanism numbers (deposit = cost_weight * 3600 / sqrt(seconds since the last add), refund after
`refund_wait`, anyone takes what is left after `any_address_claim_wait`). What each agent claims
follows the reference simulation's loop (microsoft/0xDeCA10B, simulation/decai/simulation/simulate.py),
run every time an agent wakes: over the contributions not yet fully claimed, oldest first, stop at the
first younger than the refund wait (and, once every agent has added all its samples, at the first
younger than the take-all wait); take all of one older than the take-all wait; refund one's own if the
model agrees; report another's if the model disagrees (once per reporter, for
`initial deposit * reporter's verified count / all verified`). After its last sample an agent keeps
waking at its own pace until nothing is left to claim.

Two learners, so the chain's difference can be split into the learning rule's part and the rest:
* `reference`: scikit-learn's SGD perceptron with the reference's settings (`learning_rate='optimal'`, a
  step that decays with every update), fitted on the init rows and then updated per contribution;
* `contract`: the contract's rule in float64: the chain's initial weights, a fixed step on a mistake
  (with `model.averaging` > 0, the averaged perceptron's rule: the answer is the mean weight vector).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.arrivals import Arrivals
from contracts.deploy import FIXED_POINT
from orchestrator.datasets import Dataset, for_model, load_dataset, split, to_csr
from orchestrator.scenario import Scenario
from orchestrator.training import train_initial

ETHER = 10**18
LEARNERS = ("reference", "contract")


class ReplayError(ValueError):
    pass


@dataclass
class _Agent:
    agent_id: int
    group: str
    flips: bool  # label_flip attacker: adds the other class
    mistake_rate: float
    samples: list[tuple[tuple[int, ...], int]]
    arrivals: Arrivals
    rng: np.random.Generator
    balance: float
    next_sample: int = 0


@dataclass
class _Stored:
    author: int
    data: tuple[int, ...]
    label: int
    added: int
    deposit: float
    left: float
    claimed_by: set[int] = field(default_factory=set)


class _Perceptron:
    """Binary perceptron over present-feature indices, float weights."""

    def __init__(self, kind: str, ds: Dataset, init_rows: np.ndarray, sc: Scenario):
        self.kind = kind
        if kind == "contract":
            spec = train_initial(ds, init_rows, sc.model, sc.seed)
            self.w = np.array(spec.weights, dtype=np.float64) / FIXED_POINT
            self.b = spec.intercept / FIXED_POINT
            self.step = float(sc.model.learning_rate or 0.5)
            self.clf = None
            # Averaged mode (model.averaging > 0, SparsePerceptron.sol): train `wt`, answer with the
            # mean weights w = wt - u / c, the initial weights counting as `averaging` calls.
            self.averaging = int(getattr(sc.model, "averaging", 0) or 0)
            self.wt = self.w.copy()
            self.u = np.zeros_like(self.w)
            self.c = float(self.averaging)
        else:
            from sklearn.linear_model import SGDClassifier

            self.clf = SGDClassifier(loss="perceptron", learning_rate="optimal", tol=1e-3, penalty=None,
                                     random_state=sc.seed)
            self.clf.fit(to_csr([ds.samples[i] for i in init_rows], ds.n_features), ds.labels[init_rows])
            self.n_features = ds.n_features
            self._sync()

    def _sync(self) -> None:
        assert self.clf is not None
        self.w = np.asarray(self.clf.coef_[0], dtype=np.float64).copy()
        self.b = float(self.clf.intercept_[0])

    def predict(self, data: tuple[int, ...]) -> int:
        return int(float(self.w[list(data)].sum()) + self.b > 0)

    def accuracy(self, x_test: Any, y_test: np.ndarray) -> float:
        scores = np.asarray(x_test @ self.w).ravel() + self.b
        return float(((scores > 0).astype(int) == y_test).mean())

    def update(self, data: tuple[int, ...], label: int) -> None:
        if self.clf is not None:
            self.clf.partial_fit(to_csr([data], self.n_features), [label])
            self._sync()
        elif self.averaging:
            idx = list(data)
            c = self.c
            self.c += 1
            if int(float(self.wt[idx].sum()) + self.b > 0) != label:
                delta = self.step if label == 1 else -self.step
                np.add.at(self.wt, idx, delta)  # a repeated index moves twice, as on chain
                np.add.at(self.u, idx, delta * c)
            self.w = self.wt - self.u / self.c
        elif self.predict(data) != label:
            self.w[list(data)] += self.step if label == 1 else -self.step


def deal_agents(sc: Scenario, ds: Dataset, rows: np.ndarray) -> list[tuple[int, str, str, dict[str, Any],
                                                                          list[tuple[tuple[int, ...], int]]]]:
    """(agent id, group, policy, params, samples) as the run deals them (`World._agent_specs`)."""
    total = sum(g.count for g in sc.agents)
    per_default = max(1, len(rows) // total)
    out = []
    cursor = agent_id = 0
    for g in sc.agents:
        n = g.samples_per_agent or per_default
        params = {"rate": g.rate, "arrival": g.arrival, **g.params}
        if g.arrival == "burst":
            params |= {"burst_size": g.burst_size, "burst_every": g.burst_every}
        for _ in range(g.count):
            take = [rows[(cursor + k) % len(rows)] for k in range(n)]
            cursor += n
            out.append((agent_id, g.name or g.policy, g.policy, params,
                        [(ds.samples[i], int(ds.labels[i])) for i in take]))
            agent_id += 1
    return out


@dataclass
class ReplayResult:
    learner: str
    groups: dict[int, str]
    accuracy: list[tuple[int, float]]  # (seconds since start, accuracy) after every change of the model
    balances: list[tuple[int, int, float]]  # (seconds, agent, ether) after every change of a balance
    start_balance: dict[int, float]
    end_time: int
    locked_ether: float  # deposits nobody claimed by the end
    adds: dict[int, int]
    deposits: dict[int, float]
    refunds: dict[int, float]
    takes: dict[int, float]

    def net(self) -> dict[int, float]:
        last = dict(self.start_balance)
        for _, a, b in self.balances:
            last[a] = b
        return {a: last[a] - self.start_balance[a] for a in last}


def replay(sc: Scenario, learner: str = "contract", horizon_s: int | None = None) -> ReplayResult:
    """Play the scenario's agents off-chain with `learner`; time 0 is the run's first tick."""
    if learner not in LEARNERS:
        raise ReplayError(f"learner {learner!r}: expected one of {LEARNERS}")
    inc = sc.incentive
    if getattr(inc, "type", None) != "stakeable":
        raise ReplayError(f"incentive {getattr(inc, 'type', None)!r}: the replay plays Deposit, Refund and Take only")
    if sc.model.type not in ("sparse_perceptron",):
        raise ReplayError(f"model {sc.model.type!r}: the replay has the sparse perceptron only")
    ds = for_model(load_dataset(sc.dataset, sc.seed), sc.model.type)
    parts = split(ds, sc.dataset, sc.seed)
    model = _Perceptron(learner, ds, parts.init, sc)
    x_test = to_csr([ds.samples[i] for i in parts.test], ds.n_features)
    y_test = ds.labels[parts.test]
    block_time = int(sc.chain.block_time)
    cost_weight = float(inc.cost_weight) / ETHER
    refund_wait, take_wait = int(inc.refund_wait), int(inc.any_address_claim_wait)

    agents: list[_Agent] = []
    for agent_id, group, policy, params, samples in deal_agents(sc, ds, parts.agents):
        attack = params.get("attack", "label_flip")
        if policy not in ("honest", "adversarial") or (policy == "adversarial" and attack != "label_flip"):
            raise ReplayError(f"group {group!r}: the replay plays honest and adversarial label_flip agents only")
        funding = next(g.funding for g in sc.agents if (g.name or g.policy) == group) / ETHER
        agents.append(_Agent(agent_id, group, policy == "adversarial", float(params.get("mistake_rate", 0.0)),
                             samples, Arrivals.from_params(params), np.random.default_rng([sc.seed, agent_id]),
                             funding))
    res = ReplayResult(learner, {a.agent_id: a.group for a in agents}, [(0, model.accuracy(x_test, y_test))], [],
                       {a.agent_id: a.balance for a in agents}, 0, 0.0, {a.agent_id: 0 for a in agents},
                       {a.agent_id: 0.0 for a in agents}, {a.agent_id: 0.0 for a in agents},
                       {a.agent_id: 0.0 for a in agents})
    # Time 0 is the first tick; the first draw covers the block before it, as on chain.
    queue: list[tuple[int, int, int]] = []
    for a in agents:
        a.arrivals.draw(0, block_time, a.rng)
        t = a.arrivals.next_time()
        if t is None:
            raise ReplayError(f"group {a.group!r}: the replay needs a positive arrival rate")
        # Same-second wakes go in the chain's order: a higher agent id tips more, so it is mined first.
        heapq.heappush(queue, (t, -a.agent_id, a.agent_id))
    by_id = {a.agent_id: a for a in agents}
    unclaimed: list[_Stored] = []
    num_good: dict[int, int] = {a.agent_id: 0 for a in agents}
    last_update = -10**9
    end = horizon_s if horizon_s is not None else 10**12

    def pay(agent: _Agent, amount: float, t: int) -> None:
        agent.balance += amount
        res.balances.append((t, agent.agent_id, agent.balance))

    while queue:
        t, _, aid = heapq.heappop(queue)
        if t > end:
            break
        a = by_id[aid]
        res.end_time = t
        if a.next_sample < len(a.samples):
            n = a.arrivals.draw(t, block_time, a.rng)
            for _ in range(min(n, len(a.samples) - a.next_sample)):
                data, label = a.samples[a.next_sample]
                a.next_sample += 1
                if a.flips:
                    label = 1 - label
                elif a.mistake_rate > 0 and a.rng.random() < a.mistake_rate:
                    label = 1 - label
                deposit = cost_weight * 3600 / math.sqrt(max(t - last_update, 1))
                last_update = t
                res.adds[aid] += 1
                res.deposits[aid] += deposit
                pay(a, -deposit, t)
                unclaimed.append(_Stored(aid, data, label, t, deposit, deposit))
                model.update(data, label)
                res.accuracy.append((t, model.accuracy(x_test, y_test)))
        all_added = all(x.next_sample >= len(x.samples) for x in agents)
        for s in list(unclaimed):
            age = t - s.added
            if age < refund_wait or (all_added and age < take_wait):
                break
            if age >= take_wait:
                amount = s.left
                res.takes[aid] += amount
            elif s.author == aid:
                if aid in s.claimed_by or model.predict(s.data) != s.label:
                    continue
                amount = s.left
                num_good[aid] += 1
                res.refunds[aid] += amount
            else:
                total = sum(num_good.values())
                if aid in s.claimed_by or num_good[aid] <= 0 or model.predict(s.data) == s.label:
                    continue
                amount = min(s.deposit * num_good[aid] / total, s.left)
                res.takes[aid] += amount
            s.left -= amount
            s.claimed_by.add(aid)
            pay(a, amount, t)
            if s.left <= 1e-18:
                unclaimed.remove(s)
        if a.next_sample < len(a.samples):
            nxt = a.arrivals.next_time()
        elif unclaimed:
            nxt = t + max(1, int(round(1 / a.arrivals.rate))) if a.arrivals.rate > 0 else None
        else:
            nxt = None
        if nxt is not None:
            heapq.heappush(queue, (max(nxt, t + 1), -aid, aid))
    res.locked_ether = sum(s.left for s in unclaimed)
    return res
