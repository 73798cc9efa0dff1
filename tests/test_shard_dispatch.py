"""Batches that fill up during one loop turn leave at once through the dispatch helper
(agents/shard_dispatch.py), on a real node: every caller gets its own answer in order, errors
stay per call, the counters add up, and closing stops the helper."""

from __future__ import annotations

import asyncio

import pytest

from agents.shard_dispatch import EarlyCoalescingRpc
from contracts.rpc import RpcClient, RpcError


async def test_early_batches_answer_every_caller(anvil) -> None:
    client = RpcClient(anvil.url)
    rpc = EarlyCoalescingRpc(client, anvil.url, early_batch=100)
    try:
        dev = (await client.call("eth_accounts"))[:3]
        calls = [("eth_getBalance", (dev[i % 3], "latest")) for i in range(450)]
        calls[7] = ("eth_getBalance", ("0xnot-an-address", "latest"))  # a bad call among good ones
        answers = await asyncio.gather(*(rpc.call(m, *p) for m, p in calls), return_exceptions=True)
        expected = [await client.call("eth_getBalance", a, "latest") for a in dev]
        for i, a in enumerate(answers):
            if i == 7:
                assert isinstance(a, RpcError)
            else:
                assert a == expected[i % 3], i
        # 450 calls in one turn: four batches of 100 left early, the last 50 at the turn's end.
        assert rpc.early_batches == 4 and rpc.batches == 5
        stats = rpc.stats()
        assert stats["http_requests"] == client.requests + 4 and stats["gave_up"] == 0
        # Calls spread over turns never fill a batch: nothing goes through the helper.
        for _ in range(3):
            await rpc.call("eth_blockNumber")
        assert rpc.early_batches == 4
    finally:
        await rpc.close()
        await client.close()
    assert rpc._helper_thread is None


async def test_a_dead_endpoint_fails_every_caller_of_an_early_batch() -> None:
    client = RpcClient("http://127.0.0.1:9", retries=0)  # nothing listens on the discard port
    rpc = EarlyCoalescingRpc(client, "http://127.0.0.1:9", early_batch=5)
    try:
        answers = await asyncio.gather(*(rpc.call("eth_blockNumber") for _ in range(12)), return_exceptions=True)
        assert rpc.early_batches == 2
        assert all(isinstance(a, Exception) for a in answers)
        with pytest.raises(Exception):
            await rpc.call("eth_chainId")
    finally:
        await rpc.close()
        await client.close()


async def test_without_a_helper_the_batch_goes_from_the_loop(anvil, monkeypatch) -> None:
    client = RpcClient(anvil.url)
    rpc = EarlyCoalescingRpc(client, anvil.url, early_batch=10)

    def no_thread(self: EarlyCoalescingRpc) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(EarlyCoalescingRpc, "_helper", no_thread)
    try:
        answers = await asyncio.gather(*(rpc.call("eth_chainId") for _ in range(25)))
        assert answers == [await client.call("eth_chainId")] * 25 and rpc.early_batches == 0
    finally:
        await rpc.close()
        await client.close()
