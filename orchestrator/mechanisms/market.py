"""A prediction market round (PredictionMarket.sol): a provider's bounty paid against a test set
committed by hash in portions. Deploy commits the test set and reveals the hidden portion's index;
after the schedule, settlement ends participation, reveals the test set, runs every reward pass and
lets each participant (and the provider) collect. Each step is recorded in `info` (summary.json)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import structlog

from contracts.deploy import DeployedSystem
from contracts.mechanisms import MarketDriver, MarketParams, deploy_market, split_test_set
from contracts.mechanisms import Phase as MarketPhase
from contracts.transact import TransactionFailed

from . import BuiltinIncentiveFields, DeployContext, Mechanism, SettleContext, ShardParams, register_mechanism

log = structlog.get_logger("dcai.run")

COLLECT_BLOCKS = 30  # blocks allowed for the participants' collects to be mined and read
NO_REFUND = 2**40  # a market pays out only after its round: nothing to refund while it runs


class MarketConfig(BuiltinIncentiveFields):
    type: Literal["prediction_market"]


@register_mechanism
class PredictionMarket(Mechanism):
    name: ClassVar[str] = "prediction_market"
    config_cls: ClassVar[type] = MarketConfig
    contracts: ClassVar[tuple[str, ...]] = ("PredictionMarket",)
    allows_warps: ClassVar[bool] = False  # a market round has no waits to skip
    agents_claim: ClassVar[bool] = False  # participants collect in the market's own settlement
    claims: ClassVar[str] = "none"
    models: ClassVar[tuple[str, ...] | None] = ("sparse_perceptron",)  # its contract reads perceptron weights

    driver: MarketDriver | None = None
    portions: list[Any] | None = None

    async def deploy(self, ctx: DeployContext) -> Any:
        c, sc, ds = self.config, ctx.scenario, ctx.dataset
        params = MarketParams(min_stake=c.min_stake)
        m = await deploy_market(ctx.client, ctx.tx, ctx.compiled, ctx.model_spec, params, gas_limit=sc.chain.gas_limit)
        # The market replays every contribution over the whole test set: keep it within its entry budget.
        samples, labels, entries = [], [], 0
        for i in ctx.test_rows:
            s = ds.samples[i]
            if entries + len(s) > params.max_test_entries or len(s) > params.max_data_length:
                continue
            samples.append(s)
            labels.append(int(ds.labels[i]))
            entries += len(s)
        self.portions = split_test_set(samples, labels, c.portions, salt_seed=sc.seed.to_bytes(32, "big"))
        self.driver = MarketDriver(ctx.client, m)
        await self.driver.initialize(ctx.tx, c.bounty, self.portions, min_length_s=0,
                                     min_contributions=c.min_contributions)
        index = await self.driver.reveal_init(ctx.tx, self.portions)
        self.info.update({"market": m.market, "bounty": str(c.bounty), "min_stake": str(c.min_stake),
                          "portions": len(self.portions), "test_samples": len(samples), "reveal_index": index})
        log.info("prediction market open", market=m.market, test_samples=len(samples), reveal_index=index)
        return DeployedSystem(
            trainer=m.market, data_handler="", incentive=m.market, model=m.model, deployer=ctx.tx.account.address,
            block=m.block, n_features=m.n_features, gas_used=m.gas_used, transactions=0,
            abis={"CollaborativeTrainer": m.abi, "PredictionMarket": m.abi, m.model_contract: m.model_abi},
            model_contract=m.model_contract, incentive_contract="PredictionMarket")

    def shard_params(self) -> ShardParams:
        c = self.config
        return ShardParams(mechanism=self.name, cost_weight=0, refund_wait=NO_REFUND, stake=c.min_stake,
                           owner_claim_wait=c.owner_claim_wait, any_address_claim_wait=c.any_address_claim_wait)

    async def settle(self, ctx: SettleContext) -> None:
        market, info, tx = self.driver, self.info, ctx.tx
        assert market is not None and self.portions is not None
        try:
            await market.end_participation(tx)
        except TransactionFailed as e:
            info["ended"] = f"could not end participation: {e.reason or e}"
            return
        if await market.phase() == MarketPhase.REVEAL_TEST_SET:
            info["reveal_transactions"] = await market.reveal_test_set(tx, self.portions)
            receipts = await market.process_all(tx)
            info["process_transactions"] = len(receipts)
            info["process_gas"] = sum(int(r["gasUsed"], 16) for r in receipts)
            info["passes"] = [{k: int(v) for k, v in ev.items()}
                              for r in receipts for ev in market.events(r, "PassCompleted")]
            ended = [ev for r in receipts for ev in market.events(r, "RewardPhaseEnded")]
            if ended:
                info["provider_amount"] = str(int(ended[-1]["providerAmount"]))
        info["phase_at_end"] = (await market.phase()).name
        if await market.claimable(tx.account.address) > 0:
            r = await market.collect(tx)
            info["provider_collected"] = str(sum(int(e["amount"]) for e in market.events(r, "Collected")))
        head = await ctx.latest()
        info["collect_transactions"] = await ctx.pool.market_collect(head)
        for _ in range(COLLECT_BLOCKS):
            head, reports = await ctx.step(head)
            if sum(r.in_flight for r in reports) == 0:
                break
