"""What an agent's action becomes before it is signed: its gas limit, its worst cost (for budgets)
and its call data. Mixed into ShardCore; the call data comes from `agents/shard_abi.py`'s direct
encoders and the gas limits from `agents/gas.py`, remembered per shard."""

from __future__ import annotations

from dataclasses import replace

from . import gas as gas_limits
from .policies.base import (
    Action,
    AddData,
    Contribution,
    ContributionState,
    PredictTx,
    PublicContribution,
    Refund,
    Report,
)
from .shard_abi import Encoders
from .shard_types import Agent, BlockInfo, ShardConfig


class Prepare:
    """Mixed into ShardCore."""

    config: ShardConfig
    _calldata: Encoders
    _gas_limits: dict[tuple[str, int], int]

    def _gas(self, operation: str, n_indices: int) -> int:
        """A call's gas limit (agents/gas.py), remembered per shard: the model and class count are
        fixed for a run and looking a limit up costs more than the rest of the cost check."""
        key = (operation, n_indices)
        limit = self._gas_limits.get(key)
        if limit is None:
            fn = {"add": gas_limits.add_data_gas, "refund": gas_limits.refund_gas, "report": gas_limits.report_gas,
                  "predict": gas_limits.predict_gas}[operation]
            limit = self._gas_limits[key] = fn(n_indices, self.config.model_contract, self.config.n_classes)
        return limit

    def _gas_of(self, action: Action) -> tuple[int, int]:
        """(gas limit, value) an action would be sent with."""
        if isinstance(action, AddData):
            return self._gas("add", len(action.sample.data)), action.value
        if isinstance(action, Refund):
            return 0, 0  # the contribution's size is known only to the agent: see _affordable
        if isinstance(action, Report):
            return self._gas("report", len(action.target.data)), 0
        if isinstance(action, PredictTx):
            return self._gas("predict", len(action.data)), 0
        raise TypeError(f"unknown action {action!r}")

    def _worst_cost(self, agent: Agent, action: Action, block: BlockInfo) -> int:
        """The most an action can cost its sender: value + gas limit * max fee (a policy's budget must
        hold even if everything pending costs that)."""
        gas, value = self._gas_of(action)
        if isinstance(action, Refund):
            c = agent.by_id(action.contribution_id)
            gas = self._gas("refund", len(c.data)) if c is not None else 0  # forgotten: not sent
        stance = replace(agent.fees, tip=action.tip) if action.tip is not None else agent.fees
        return value + gas * stance.price(block.base_fee)[1]

    def _prepare(self, agent: Agent, action: Action, block: BlockInfo
                 ) -> tuple[Agent, str, bytes, int, int, BlockInfo, Contribution | None, PublicContribution | None,
                            int | None] | None:
        enc = self._calldata.encode
        if isinstance(action, AddData):
            c = agent.new_contribution(action.sample)
            return (agent, "add", enc("addData", list(c.data), c.label), action.value,
                    self._gas("add", len(c.data)), block, c, None, action.tip)
        if isinstance(action, Refund):
            c = agent.by_id(action.contribution_id)
            if c is None or c.state is not ContributionState.ADDED:
                return None
            c.state = ContributionState.REFUND_SENT
            return (agent, "refund", enc("refund", list(c.data), c.label, c.added_time), 0,
                    self._gas("refund", len(c.data)), block, c, None, action.tip)
        if isinstance(action, Report):
            g = action.target
            return (agent, "report", enc("report", list(g.data), g.label, g.added_time, g.author), 0,
                    self._gas("report", len(g.data)), block, None, g, action.tip)
        if isinstance(action, PredictTx):
            return (agent, "spam", enc("predict", list(action.data)), 0,
                    self._gas("predict", len(action.data)), block, None, None, action.tip)
        raise TypeError(f"unknown action {action!r}")
