"""Who made or lost what: per agent and per policy, from the ledger, checked against the chain.

Each transaction moves ether for its sender: an included one `received - value - fee`, a reverted one
`-fee` (its value comes back), one never mined nothing. Summed per agent this must equal, to the wei,
the change of the agent's balance on chain: the reconciliation.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass
class AgentAccount:
    agent: int
    group: str
    policy: str
    address: str
    start_balance: int
    end_balance: int
    transactions: int
    deposits: int  # kept by the trainer when adding data
    refunds: int  # own deposits back
    takes: int  # others' deposits won by reporting
    fees: int
    net: int  # refunds + takes - deposits - fees: what the mechanism and the chain made it gain or lose
    ledger_flow: int  # the balance change the ledger accounts for
    reconciled: bool  # ledger_flow == end_balance - start_balance
    points: int  # verified contributions (numValid) at the end


ACCOUNT_COLUMNS = [f.name for f in fields(AgentAccount)]


def accounts(
    ledger: Mapping[str, Sequence[Any]],
    agents: Sequence[Mapping[str, Any]],
    start_balances: Mapping[str, int],
    end_balances: Mapping[str, int],
    points: Mapping[str, int],
) -> list[AgentAccount]:
    per: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    cols = ledger
    for i in range(len(cols.get("tx_hash", []))):
        a = per[cols["sender"][i]]
        status = cols["status"][i]
        a["transactions"] += 1
        if status not in ("included", "reverted"):
            continue
        fee = int(cols["gas_used"][i]) * int(cols["effective_gas_price"][i])
        a["fees"] += fee
        if status == "reverted":
            a["flow"] -= fee
            continue
        value, received = int(cols["value"][i]), int(cols["received"][i])
        a["flow"] += received - value - fee
        action = cols["action"][i]
        if action == "add":
            a["deposits"] += int(cols["deposit"][i])
        elif action in ("refund", "collect"):  # own money back (a market's collect: stake +- reward)
            a["refunds"] += received
        elif action == "report":
            a["takes"] += received
    out = []
    for ag in agents:
        addr = ag["address"]
        a = per.get(addr, {})
        start, end = int(start_balances.get(addr, 0)), int(end_balances.get(addr, 0))
        flow = int(a.get("flow", 0))
        out.append(AgentAccount(
            agent=int(ag["agent"]), group=str(ag["group"]), policy=str(ag["policy"]), address=addr,
            start_balance=start, end_balance=end, transactions=int(a.get("transactions", 0)),
            deposits=int(a.get("deposits", 0)), refunds=int(a.get("refunds", 0)), takes=int(a.get("takes", 0)),
            fees=int(a.get("fees", 0)),
            net=int(a.get("refunds", 0)) + int(a.get("takes", 0)) - int(a.get("deposits", 0)) - int(a.get("fees", 0)),
            ledger_flow=flow, reconciled=(flow == end - start), points=int(points.get(addr, 0)),
        ))
    return out


def by_group(rows: Sequence[AgentAccount]) -> dict[str, dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {}
    for r in rows:
        g = groups.setdefault(r.group, {"policy": r.policy, "agents": 0, "transactions": 0, "deposits": 0,
                                        "refunds": 0, "takes": 0, "fees": 0, "net": 0, "points": 0,
                                        "reconciled_agents": 0})
        g["agents"] += 1
        for k in ("transactions", "deposits", "refunds", "takes", "fees", "net", "points"):
            g[k] += getattr(r, k)
        g["reconciled_agents"] += int(r.reconciled)
    for g in groups.values():
        n = max(g["agents"], 1)
        g["net_ether"] = g["net"] / 1e18
        g["net_per_agent_ether"] = g["net"] / 1e18 / n
        # Groups differ in size: the mean per agent is what compares one policy with another.
        g["per_agent"] = {f"{k}_ether": g[k] / 1e18 / n for k in ("deposits", "refunds", "takes", "fees", "net")}
        g["per_agent"]["points"] = g["points"] / n
        g["per_agent"]["transactions"] = g["transactions"] / n
        for k in ("deposits", "refunds", "takes", "fees", "net"):
            g[k] = str(g[k])  # exact wei as strings
    return groups


def versus_baseline(groups: dict[str, dict[str, Any]], baseline: Mapping[str, Mapping[str, Any]]) -> None:
    """Each group's change against the same group in the honest-only baseline (which holds the honest
    groups only): per agent, in ether. Groups absent from the baseline get None."""
    for name, g in groups.items():
        b = baseline.get(name)
        if not isinstance(b, Mapping) or b.get("net_per_agent_ether") is None:
            g["vs_baseline"] = None
            continue
        mine, theirs = g.get("per_agent") or {}, b.get("per_agent") or {}
        g["vs_baseline"] = {
            "net_per_agent_ether": float(g["net_per_agent_ether"]) - float(b["net_per_agent_ether"]),
            "baseline_net_per_agent_ether": float(b["net_per_agent_ether"]),
            **{f"{k}_per_agent_ether": mine[f"{k}_ether"] - theirs[f"{k}_ether"]
               for k in ("deposits", "refunds", "takes", "fees") if f"{k}_ether" in mine and f"{k}_ether" in theirs},
        }


def to_columns(rows: Sequence[AgentAccount]) -> dict[str, list[Any]]:
    cols: dict[str, list[Any]] = {name: [] for name in ACCOUNT_COLUMNS}
    for r in rows:
        for k, v in asdict(r).items():
            cols[k].append(v)
    return cols
