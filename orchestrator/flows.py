"""Where each deposit went: per contribution (deposit, refunded, taken by whom, still locked), the
group x group matrix of ether taken, and the ether left in the trainer.

A contribution is one AddData event (contributions.parquet, keyed by its addData `tx_hash`). A claim
is an included `refund` or `report` (report covers take and take-all) in the ledger; the ledger's
`target_tx` names the contribution it claimed. What a contribution's claims did not pay out is still
in the trainer: summed over contributions this must equal the trainer's balance at the end (the
settlement check, like the per-agent reconciliation). Ledgers written before `target_tx` existed
give the totals but no per-contribution split (`attributed: false`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

CLAIMS = ("refund", "report")
OUTSIDE = "(outside the run)"  # an author or claimant that is no agent of the run (deployer, stranger)


@dataclass
class ContributionFlow:
    contribution_tx: str
    block: int
    author: str
    agent: int  # -1 when the author is no agent of the run
    group: str
    label: int
    deposit: int
    refunded: int  # paid back to the author by refund
    taken: int  # paid to reporters (take, take-all; the author's own take-all too)
    locked: int  # deposit - refunded - taken: still in the trainer
    claims: int  # included claims that paid something for it
    taken_by: str  # "group: wei; ..." of the takers, for reading


FLOW_COLUMNS = [f.name for f in fields(ContributionFlow)]


@dataclass
class Flows:
    contributions: list[ContributionFlow] = field(default_factory=list)
    attributed: bool = True  # every claim named its contribution (ledger has target_tx)
    unattributed_claims: int = 0  # included claims whose contribution is unknown
    unattributed_wei: int = 0
    taken: dict[str, dict[str, int]] = field(default_factory=dict)  # taker group -> author group -> wei
    distinct: dict[str, dict[str, int]] = field(default_factory=dict)  # group -> contributions, distinct
    distinct_by_agent: dict[int, int] = field(default_factory=dict)  # agent -> distinct samples

    @property
    def deposits(self) -> int:
        return sum(c.deposit for c in self.contributions)

    @property
    def locked(self) -> int:
        """Ether left in the trainer: deposits minus every claim paid, attributed or not."""
        return sum(c.locked for c in self.contributions) - self.unattributed_wei

    def by_group(self) -> dict[str, dict[str, int]]:
        """Per author group: deposits of its contributions, refunded, taken by others, still locked."""
        out: dict[str, dict[str, int]] = {}
        for c in self.contributions:
            g = out.setdefault(c.group, {"contributions": 0, "deposits": 0, "refunded": 0, "taken": 0,
                                         "taken_by_others": 0, "locked": 0})
            g["contributions"] += 1
            g["deposits"] += c.deposit
            g["refunded"] += c.refunded
            g["taken"] += c.taken
            g["locked"] += c.locked
        for taker, row in self.taken.items():
            for author, wei in row.items():
                if author != taker and author in out:
                    out[author]["taken_by_others"] += wei
        return out

    def to_columns(self) -> dict[str, list[Any]]:
        return {name: [getattr(c, name) for c in self.contributions] for name in FLOW_COLUMNS}


def compute(ledger: Mapping[str, Sequence[Any]], contributions: Mapping[str, Sequence[Any]],
            agents: Mapping[str, tuple[int, str]]) -> Flows:
    """`agents`: address (any case) -> (agent id, group)."""
    who = {a.lower(): v for a, v in agents.items()}
    out = Flows(attributed="target_tx" in ledger)
    index: dict[str, ContributionFlow] = {}
    contents: dict[tuple[str, str, int], list[tuple[Any, ...]]] = defaultdict(list)  # (group, author, agent)
    for i, tx in enumerate(contributions.get("tx_hash", [])):
        author = str(contributions["author"][i])
        agent, group = who.get(author.lower(), (-1, OUTSIDE))
        c = ContributionFlow(contribution_tx=str(tx), block=int(contributions["block"][i]), author=author, agent=agent,
                             group=group, label=int(contributions["label"][i]),
                             deposit=int(contributions["deposit"][i] or 0), refunded=0, taken=0, locked=0, claims=0,
                             taken_by="")
        out.contributions.append(c)
        index[c.contribution_tx.lower()] = c
        data = contributions.get("data")
        contents[(group, author.lower(), agent)].append(
            tuple(data[i]) if data is not None and data[i] is not None else ())
    takers: dict[str, Counter[str]] = defaultdict(Counter)
    targets = ledger.get("target_tx")
    for i, action in enumerate(ledger.get("action", [])):
        if action not in CLAIMS or ledger["status"][i] != "included":
            continue
        amount = int(ledger["received"][i] or 0)
        target = index.get(str(targets[i]).lower()) if targets is not None and targets[i] else None
        if target is None:
            if amount:
                out.unattributed_claims += 1
                out.unattributed_wei += amount
            continue
        if amount:
            target.claims += 1
        claimant = who.get(str(ledger["sender"][i]).lower(), (-1, OUTSIDE))[1]
        if action == "refund":
            target.refunded += amount
        else:
            target.taken += amount
            takers[target.contribution_tx][claimant] += amount
            row = out.taken.setdefault(claimant, {})
            row[target.group] = row.get(target.group, 0) + amount
    for c in out.contributions:
        c.locked = c.deposit - c.refunded - c.taken
        c.taken_by = "; ".join(f"{g}: {w}" for g, w in sorted(takers.get(c.contribution_tx, {}).items()))
    # Distinct samples per agent, summed per group: an agent echoing the model's own prediction on
    # one sample and near-copies of it (a karma seeker) adds many contributions but few samples.
    for (g, _, agent), items in contents.items():
        n = distinct_samples(items)
        d = out.distinct.setdefault(g, {"contributions": 0, "distinct": 0})
        d["contributions"] += len(items)
        d["distinct"] += n
        if agent >= 0:
            out.distinct_by_agent[agent] = n
    return out


NEAR_LIMIT = 2_000  # contributions of one author compared pairwise for near-copies; beyond, exact only


def distinct_samples(items: Sequence[tuple[Any, ...]]) -> int:
    """How many different samples a list of contributions' data holds, near-copies merged: the same
    values in another order (a dense input with components swapped), or index sets that differ by at
    most one element each way (a sparse sample with a feature dropped or changed). Labels are left
    out on purpose: relabelling one sample adds no new sample."""
    keys = list(dict.fromkeys(tuple(sorted(x)) for x in items))
    if len(keys) > NEAR_LIMIT:
        return len(keys)
    parent = list(range(len(keys)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    sets = [set(k) for k in keys]
    for i in range(len(keys)):
        for j in range(i):
            a, b = sets[i], sets[j]
            if len(a) >= 3 and len(b) >= 3 and len(a - b) <= 1 and len(b - a) <= 1:
                parent[find(i)] = find(j)
    return len({find(i) for i in range(len(keys))})


def summary_block(flows: Flows, *, trainer_balance_end: int | None, groups: Sequence[str],
                  incentive_type: str | None) -> dict[str, Any]:
    """summary.json `settlement`: locked ether, the check against the trainer's balance, the matrix."""
    locked = flows.locked
    checked = trainer_balance_end is not None and incentive_type != "prediction_market"
    ok = (int(trainer_balance_end) == locked) if checked else None  # type: ignore[arg-type]
    by_group = flows.by_group()
    order = list(dict.fromkeys([*groups, *by_group, *flows.taken, *(a for r in flows.taken.values() for a in r)]))
    block: dict[str, Any] = {
        "locked": _wei(locked),
        "deposits": _wei(flows.deposits),
        "locked_share_of_deposits": locked / flows.deposits if flows.deposits else None,
        "trainer_balance_end": _wei(trainer_balance_end) if trainer_balance_end is not None else None,
        "ok": ok,
        "contributions": len(flows.contributions),
        "contributions_with_locked_ether": sum(1 for c in flows.contributions if c.locked > 0),
        "attributed": flows.attributed,
        "unattributed_claims": flows.unattributed_claims,
        "unattributed": _wei(flows.unattributed_wei),
        "by_group": {g: {k: (str(v) if k != "contributions" else v) for k, v in by_group[g].items()}
                     for g in order if g in by_group},
        "taken_matrix": {"groups": order, "wei": [[str(flows.taken.get(t, {}).get(a, 0)) for a in order]
                                                  for t in order],
                         "rows": "taker group", "columns": "author group"},
    }
    if incentive_type == "prediction_market":
        block["note"] = ("a prediction market holds stakes and the bounty until every participant collects: "
                         "the trainer-balance check does not apply")
    elif trainer_balance_end is None:
        block["note"] = "the trainer's balance at the end was not read: locked ether is not checked against it"
    elif not ok:
        block["message"] = (f"settlement mismatch: the contributions leave {locked} wei locked but the trainer "
                            f"holds {trainer_balance_end} wei (difference {int(trainer_balance_end) - locked} wei)")
    return block


def _wei(v: int) -> dict[str, Any]:
    return {"wei": str(int(v)), "ether": int(v) / 1e18}


def table(ledger: Mapping[str, Sequence[Any]], contributions: Mapping[str, Sequence[Any]],
          accounts: Sequence[Any]) -> dict[str, list[Any]]:
    """contribution_flows.parquet's columns, from the run's ledger, contributions and accounts."""
    return compute(ledger, contributions, {a.address: (a.agent, a.group) for a in accounts}).to_columns()
