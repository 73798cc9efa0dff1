"""Throughput path (c): web3.py's ordinary per-transaction path (build, sign, send), synchronous."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from common import (  # noqa: E402
    MAX_DEPOSIT,
    Miner,
    fund_batched,
    sample,
    wait_all_receipts,
)
from throughput_measure import PER_SENDER, Settings, Window, figures, new_chain

from agents import gas as gas_limits
from contracts.signing import LocalAccount, derive_key


def web3_send(url: str, trainer: str, abi: list[dict[str, Any]], keys: list[bytes], n: int,
              gas: int | None, calls: Counter[str]) -> list[str]:
    """The ordinary web3.py loop: build, sign, send, one transaction at a time."""
    from eth_account import Account
    from web3 import HTTPProvider, Web3

    provider = HTTPProvider(url)
    make_request = provider.make_request

    def counted(method: Any, params: Any) -> Any:  # count the JSON-RPC calls web3 makes
        calls[str(method)] += 1
        return make_request(method, params)

    provider.make_request = counted  # type: ignore[method-assign]
    w3 = Web3(provider)
    contract = w3.eth.contract(address=trainer, abi=abi)
    accounts = [Account.from_key(k) for k in keys]
    nonces = [0] * len(accounts)
    hashes = []
    for i in range(n):
        k = i % len(accounts)
        acct = accounts[k]
        data, label = sample(nonces[k])
        params: dict[str, Any] = {"from": acct.address, "nonce": nonces[k], "value": MAX_DEPOSIT}
        if gas is not None:
            params["gas"] = gas
        tx = contract.functions.addData(list(data), label).build_transaction(params)
        signed = acct.sign_transaction(tx)
        hashes.append("0x" + w3.eth.send_raw_transaction(signed.raw_transaction).hex().removeprefix("0x"))
        nonces[k] += 1
    return hashes


async def run_web3(s: Settings, run: int, *, fixed_gas: bool) -> dict[str, Any]:
    chain = await new_chain(s)
    try:
        n = s.n_web3
        keys = [derive_key("bench-web3", run, int(fixed_gas), i) for i in range((n + PER_SENDER - 1) // PER_SENDER)]
        await fund_batched(chain, [LocalAccount.from_key(k).address for k in keys])
        abi = chain.compiled["CollaborativeTrainer"].abi
        gas = gas_limits.add_data_gas(len(sample(0)[0])) if fixed_gas else None
        async with Miner(chain.url, s.block_ms / 1000) as miner:
            w = Window(chain.node.proc.pid)  # type: ignore[union-attr]
            calls: Counter[str] = Counter()
            hashes = await asyncio.to_thread(web3_send, chain.url, chain.system.trainer, abi, keys, n, gas, calls)
            submitted = w.mark()
            receipts = await wait_all_receipts(chain.client, hashes)
            included = w.mark()
        out = figures(n, submitted, included)
        statuses = Counter("success" if r.get("status") == "0x1" else "reverted" for r in receipts)
        gas_used = sorted(int(r["gasUsed"], 16) for r in receipts)
        out.update(statuses=dict(statuses), blocks=miner.blocks, senders=len(keys),
                   rpc_calls_per_tx=sum(calls.values()) / n, rpc_calls_by_method={k: v / n for k, v in calls.items()},
                   gas_limit="given: " + str(gas) if gas else "estimated by web3 (eth_estimateGas)",
                   gas_used_max=gas_used[-1])
        return out
    finally:
        await chain.close()
