"""The built-in invariants (registered on import). Each one is incremental: what it tracks is
updated from `ctx.view` and a few batched reads at the checked block.

* `deposits_backed` (trainer mechanisms: stakeable, points and plugins whose claims are deposits or points): the trainer's balance equals what is still claimable, the
  sum of the data handler's remainders over every contribution (re-read for the contributions a
  block touched).
* `claims_once` (stakeable, points): no contribution refunded twice; no wei paid out of a
  contribution beyond its deposit, and its remainder is the deposit minus what its claims paid;
  the data handler's claim count matches the claims seen; points: at most one claim each.
* `points_never_decrease` (stakeable, points): validated counts (and points reports) per account
  and the mechanism's totals never go down; the good-data total equals the refunds seen.
* `model_within_bounds` (trainers; per model family): perceptron weights within the initial
  largest magnitude plus what the updates since could add; dense centroids within the unit-norm
  range; naive Bayes and sparse centroid sample counts never decrease nor outgrow the contributions.
* `market_conserved` (prediction market): the market's balance equals the bounty plus the stakes
  minus what was collected.
"""

from __future__ import annotations

from typing import Any

from .base import Invariant, InvariantContext, Violation, claim_style, register

TRAINER_CLAIMS = frozenset({"deposit", "points"})  # mechanisms behind CollaborativeTrainer
ACCOUNT_WINDOW = 32  # accounts re-read per block besides those the block touched (one call per account)
UNIT = 10**9  # the models' fixed point
# |d_i| of a unit-norm sample: the contracts accept |sum d^2 - 1e18| < 1e11, so |d_i| < 1e9 + 50.
DENSE_VALUE_MAX = UNIT + 50


class DepositsBacked(Invariant):
    name = "deposits_backed"
    description = "the trainer's balance equals the sum of the contributions' claimable remainders"
    claim_styles = TRAINER_CLAIMS

    def __init__(self) -> None:
        self.claimable: dict[bytes, int] = {}
        self._reported: int | None = None  # the difference last reported: a lasting gap is reported once

    async def check(self, ctx: InvariantContext, block: int) -> list[Violation]:
        view = ctx.view
        # A new contribution holds its AddData deposit (the event says so; the balance check below
        # would see any difference): only claimed contributions are read from the data handler, so
        # a block of hundreds of adds costs no extra call.
        for c in view.contributions:
            self.claimable[c.key] = c.deposit
        touched = [c.key for c in view.claims if c.key is not None]
        if view.unattributed:  # a claim we cannot place: reread every contribution still holding wei
            touched += [k for k, v in self.claimable.items() if v > 0]
        states = await ctx.contribution_states(touched, block)
        out = []
        for key, (_dep, remainder, _n, _by_author, exists) in states.items():
            if not exists:
                out.append(self.violation(block, "a contribution seen in an AddData event is missing from the "
                                                 "data handler", key="0x" + key.hex()))
            self.claimable[key] = remainder
        balance = await ctx.balance(ctx.system.trainer, block)
        owed = sum(self.claimable.values())
        if balance != owed:
            if self._reported != balance - owed:
                out.append(self.violation(block, f"trainer balance {balance} wei differs from the claimable total "
                                                 f"{owed} wei by {balance - owed}", balance=str(balance),
                                          claimable=str(owed), difference=str(balance - owed),
                                          contributions=len(self.claimable)))
            self._reported = balance - owed
        else:
            self._reported = None
        return out


class ClaimsOnce(Invariant):
    name = "claims_once"
    description = "no contribution refunded twice or paid out beyond its deposit; claim counts match"
    claim_styles = TRAINER_CLAIMS

    def __init__(self) -> None:
        self.refunds: dict[bytes, int] = {}
        self.claims: dict[bytes, int] = {}
        self.paid: dict[bytes, int] = {}

    async def check(self, ctx: InvariantContext, block: int) -> list[Violation]:
        out = []
        keys = []
        for c in ctx.view.claims:
            if c.key is None:
                continue
            keys.append(c.key)
            self.claims[c.key] = self.claims.get(c.key, 0) + 1
            self.paid[c.key] = self.paid.get(c.key, 0) + c.amount
            if c.kind == "refund":
                self.refunds[c.key] = self.refunds.get(c.key, 0) + 1
                if self.refunds[c.key] > 1:
                    out.append(self.violation(c.block, "contribution refunded twice", key="0x" + c.key.hex(),
                                              author=c.author, tx=c.tx_hash))
            if claim_style(ctx.mechanism) == "points" and self.claims[c.key] > 1:
                out.append(self.violation(c.block, f"points contribution claimed {self.claims[c.key]} times",
                                          key="0x" + c.key.hex(), claimer=c.claimer, tx=c.tx_hash))
        if not keys:
            return out
        states = await ctx.contribution_states(keys, block)
        for key in dict.fromkeys(keys):
            deposit, remainder, n_claims, _by_author, _exists = states[key]
            paid = self.paid[key]
            if paid > deposit:
                out.append(self.violation(block, f"{paid} wei paid out of a contribution that deposited {deposit}",
                                          key="0x" + key.hex(), paid=str(paid), deposit=str(deposit)))
            elif claim_style(ctx.mechanism) == "deposit" and remainder != deposit - paid:
                out.append(self.violation(block, f"remainder {remainder} wei but deposit {deposit} minus paid "
                                                 f"{paid} is {deposit - paid}", key="0x" + key.hex(),
                                          remainder=str(remainder), deposit=str(deposit), paid=str(paid)))
            if not ctx.view.unattributed and n_claims < self.claims[key]:
                out.append(self.violation(block, f"the data handler counts {n_claims} claims, {self.claims[key]} "
                                                 "were paid", key="0x" + key.hex()))
        return out


class PointsNeverDecrease(Invariant):
    name = "points_never_decrease"
    description = "validated counts, reports and the mechanism's totals never go down"
    claim_styles = TRAINER_CLAIMS

    def __init__(self) -> None:
        self.last: dict[tuple[str, str], int] = {}
        self.refunds = 0
        self._cursor = 0

    def _totals(self, ctx: InvariantContext) -> list[str]:
        names = {f.name for f in ctx.system.incentive_abi.functions.values()}
        return [n for n in ("totalSubmitted", "totalGoodDataCount", "totalReports") if n in names]

    def _per_account(self, ctx: InvariantContext) -> list[str]:
        names = {f.name for f in ctx.system.incentive_abi.functions.values()}
        return [n for n in ("numValid", "numReports") if n in names]

    async def start(self, ctx: InvariantContext, block: int) -> None:
        self.refunds = 0

    async def check(self, ctx: InvariantContext, block: int) -> list[Violation]:
        view = ctx.view
        self.refunds += sum(1 for name, _, _ in view.logs if name == "Refund")
        # The accounts this block touched, plus a round-robin window over every author so far.
        accounts = list(dict.fromkeys([c.claimer for c in view.claims] + [c.author for c in view.contributions]))
        authors = ctx.authors
        if authors:
            n = min(ACCOUNT_WINDOW, len(authors))
            accounts += [authors[(self._cursor + i) % len(authors)] for i in range(n)]
            self._cursor = (self._cursor + n) % len(authors)
        accounts = list(dict.fromkeys(accounts))
        sys_, abi = ctx.system, ctx.system.incentive_abi
        totals, per = self._totals(ctx), self._per_account(ctx)
        calls: list[tuple[str, Any, str, tuple[Any, ...]]] = [(sys_.incentive, abi, t, ()) for t in totals]
        calls += [(sys_.incentive, abi, fn, (a,)) for a in accounts for fn in per]
        values = await ctx.calls(calls, block)
        out = []
        names = [("total", t) for t in totals] + [(a, fn) for a in accounts for fn in per]
        for (who, what), value in zip(names, values):
            value = int(value)
            before = self.last.get((who, what))
            if before is not None and value < before:
                out.append(self.violation(block, f"{what} of {who} went down from {before} to {value}",
                                          account=who, field=what, before=before, after=value))
            self.last[(who, what)] = value
        good = self.last.get(("total", "totalGoodDataCount"))
        if good is not None and good != self.refunds and self.last.get(("refunds", "seen")) != self.refunds - good:
            out.append(self.violation(block, f"totalGoodDataCount is {good} but {self.refunds} refunds were made",
                                      total=good, refunds=self.refunds))
            self.last[("refunds", "seen")] = self.refunds - good  # report a given gap once
        return out


class ModelWithinBounds(Invariant):
    name = "model_within_bounds"
    description = "model values within what the initial model and the updates since can reach"
    claim_styles = TRAINER_CLAIMS

    def __init__(self) -> None:
        self.base_max = 0  # largest |value| at the baseline block
        self.allowance = 0  # what the updates since can add to any |value|
        self.step = 0
        self.counts: list[int] = []  # sample counts per class (count-based families)
        self.added: list[int] = []  # AddData per class since the baseline
        self._cursor = 0
        self._flagged: dict[int, int] = {}

    @property
    def family(self) -> str:
        return self._family

    async def start(self, ctx: InvariantContext, block: int) -> None:
        self._family = ctx.model_contract
        abi, model = ctx.system.model_abi, ctx.system.model
        if self._family in ("SparsePerceptron", "DensePerceptron"):
            (lr,) = await ctx.calls([(model, abi, "learningRate", ())], block)
            self.step = abs(int(lr))
            self.base_max = max((abs(v) for v in await self._values(ctx, block, 0, ctx.system.n_features)), default=0)
        elif self._family == "DenseNearestCentroid":
            (counts,) = await ctx.calls([(model, abi, "getDataCounts", ())], block)
            self.counts = [int(c) for c in counts]
            self.base_max = max((abs(v) for v in await self._values(ctx, block, 0, self._size(ctx))), default=0)
        else:  # NaiveBayes, SparseNearestCentroid: per-class sample counts
            (infos,) = await ctx.calls([(model, abi, "getClassInfos", ())], block)
            self.counts = [int(c) for c in infos[0]]
        self.added = [0] * len(self.counts)

    def _size(self, ctx: InvariantContext) -> int:
        return ctx.system.n_features * (len(self.counts) if self._family == "DenseNearestCentroid" else 1)

    async def _values(self, ctx: InvariantContext, block: int, start: int, count: int) -> list[int]:
        """Flat values [start, start + count) (perceptron weights; centroids class after class)."""
        abi, model, n = ctx.system.model_abi, ctx.system.model, ctx.system.n_features
        calls = []
        i = start
        while i < start + count:
            if self._family == "DenseNearestCentroid":
                k, j = divmod(i, n)
                take = min(n - j, start + count - i, 4000)
                calls.append((model, abi, "getCentroid", (k, j, take)))
            else:
                take = min(start + count - i, 4000)
                calls.append((model, abi, "getWeights", (i, take)))
            i += take
        return [int(v) for part in await ctx.calls(calls, block) for v in part]

    async def check(self, ctx: InvariantContext, block: int) -> list[Violation]:
        for c in ctx.view.contributions:
            if self._family == "SparsePerceptron":
                self.allowance += len(c.data) * self.step  # an index may repeat within a sample
            elif self._family == "DensePerceptron":
                self.allowance += self.step + 1
            if 0 <= c.label < len(self.added):
                self.added[c.label] += 1
        if self._family in ("SparsePerceptron", "DensePerceptron", "DenseNearestCentroid"):
            return await self._check_values(ctx, block)
        return await self._check_counts(ctx, block)

    async def _check_values(self, ctx: InvariantContext, block: int) -> list[Violation]:
        size = self._size(ctx)
        n = min(ctx.window, size)
        start = self._cursor
        first = await self._values(ctx, block, start, min(n, size - start))
        rest = await self._values(ctx, block, 0, n - len(first)) if len(first) < n else []
        self._cursor = (start + n) % size
        indices = list(range(start, start + len(first))) + list(range(len(rest)))
        if self._family == "DenseNearestCentroid":
            bound = max(self.base_max, DENSE_VALUE_MAX)
        else:
            bound = self.base_max + self.allowance
        out = []
        for i, v in zip(indices, first + rest):
            if abs(v) > bound and self._flagged.get(i) != v:
                out.append(self.violation(block, f"{self._family} value {i} is {v}, beyond the bound {bound}",
                                          index=i, value=str(v), bound=str(bound)))
                self._flagged[i] = v
        return out

    async def _check_counts(self, ctx: InvariantContext, block: int) -> list[Violation]:
        abi, model = ctx.system.model_abi, ctx.system.model
        (infos,) = await ctx.calls([(model, abi, "getClassInfos", ())], block)
        out = []
        for k, value in enumerate(int(c) for c in infos[0]):
            if k >= len(self.counts):
                continue
            limit = self.counts[k] + self.added[k]
            if value > limit or value < self._flagged.get(-1 - k, 0):
                out.append(self.violation(block, f"class {k} sample count {value} outside [previous, "
                                                 f"{limit}] (baseline {self.counts[k]} + {self.added[k]} added)",
                                          class_index=k, value=value, limit=limit))
            self._flagged[-1 - k] = value
        return out


class MarketConserved(Invariant):
    name = "market_conserved"
    description = "the market's balance equals the bounty plus the stakes minus what was collected"
    mechanisms = frozenset({"prediction_market"})

    def __init__(self) -> None:
        self.expected = 0
        self._reported: int | None = None

    async def start(self, ctx: InvariantContext, block: int) -> None:
        # The market is checked from its deployment block: every wei it holds came through its events.
        self.expected = 0

    async def check(self, ctx: InvariantContext, block: int) -> list[Violation]:
        for name, args, _ in ctx.view.logs:
            if name == "MarketInitialized":
                self.expected += int(args["bounty"])
            elif name == "AddData":
                self.expected += int(args["cost"])
            elif name == "Collected":
                self.expected -= int(args["amount"])
        balance = await ctx.balance(ctx.system.trainer, block)
        if balance != self.expected:
            if self._reported != balance - self.expected:
                self._reported = balance - self.expected
                return [self.violation(block, f"market balance {balance} wei, but bounty + stakes - collected = "
                                              f"{self.expected} wei", balance=str(balance),
                                       expected=str(self.expected), difference=str(balance - self.expected))]
            return []
        self._reported = None
        return []


for _cls in (DepositsBacked, ClaimsOnce, PointsNeverDecrease, ModelWithinBounds, MarketConserved):
    register(_cls, builtin=True)
