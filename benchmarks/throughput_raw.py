"""Throughput path (a): pre-signed raw transactions sent in JSON-RPC batches (the ceiling)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from common import (  # noqa: E402
    MAX_DEPOSIT,
    Miner,
    TIP,
    fund_batched,
    sample,
    wait_all_receipts,
)
from throughput_measure import PER_SENDER, Settings, Window, figures, new_chain, senders_for

from agents import gas as gas_limits
from contracts.rpc import RpcClient, RpcError
from contracts.signing import sign_eip1559


async def run_raw(s: Settings, run: int) -> dict[str, Any]:
    chain = await new_chain(s)
    try:
        accounts = senders_for(s.n, 1, run)
        await fund_batched(chain, [a.address for a in accounts])
        abi = chain.system.abis["CollaborativeTrainer"]
        to = bytes.fromhex(chain.system.trainer[2:])
        cpu = time.process_time()
        txs = []
        for j in range(PER_SENDER):
            for a in accounts:
                if len(txs) == s.n:
                    break
                data, label = sample(j)
                txs.append(sign_eip1559(a, chain_id=chain.chain_id, nonce=j, max_priority_fee=TIP, max_fee=TIP,
                                        gas=gas_limits.add_data_gas(len(data)), to=to, value=MAX_DEPOSIT,
                                        data=abi.encode("addData", list(data), label)))
        sign_ms = (time.process_time() - cpu) / len(txs) * 1e3
        sender = RpcClient(chain.url, max_connections=s.raw_concurrency)
        rejected = 0
        try:
            async with Miner(chain.url, s.block_ms / 1000) as miner:
                w = Window(chain.node.proc.pid)  # type: ignore[union-attr]
                sem = asyncio.Semaphore(s.raw_concurrency)

                async def send(chunk: list[Any]) -> None:
                    nonlocal rejected
                    async with sem:
                        res = await sender.batch([("eth_sendRawTransaction", [t.raw_hex]) for t in chunk])
                        rejected += sum(isinstance(r, RpcError) for r in res)

                await asyncio.gather(*(send(txs[i:i + s.raw_batch]) for i in range(0, len(txs), s.raw_batch)))
                submitted = w.mark()
                receipts = await wait_all_receipts(sender, [t.hash_hex for t in txs])
                included = w.mark()
        finally:
            await sender.close()
        out = figures(len(txs), submitted, included)
        statuses = Counter("success" if r.get("status") == "0x1" else "reverted" for r in receipts)
        out.update(presign_cpu_ms_per_tx=sign_ms, rejected=rejected, statuses=dict(statuses),
                   blocks=miner.blocks, senders=len(accounts))
        return out
    finally:
        await chain.close()
