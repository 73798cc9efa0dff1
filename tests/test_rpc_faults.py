"""The RPC client under injected network faults, and whole runs through a fault proxy.

Everything goes through `orchestrator.faultproxy` in front of a real anvil node: no mock. The unit
tests force exact faults (`FaultProxy.force`); the runs draw them at a seeded rate and then check the
ledger against the chain itself, block by block: no transaction lost, none counted twice.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from telemetry_helpers import Mosquitto, _die_with_parent, mosquitto_binary

from contracts.rpc import RpcClient, RpcError, RpcTransportError, rotate_endpoints, tx_hash_of
from contracts.signing import LocalAccount, derive_key, dev_accounts, sign_eip1559
from orchestrator.faultproxy import FAULT_KINDS, FaultPlan, FaultProxy
from orchestrator.nodes import AnvilNode, NodeSettings
from orchestrator.run import Run
from orchestrator.scenario import load_scenario_text

ROOT = Path(__file__).resolve().parents[1]
FINAL = {"included", "reverted", "replaced", "dropped"}
RPC_USER, RPC_PASSWORD = "rpc-fault-user", "Pr0xy-Pa55-word-q"


# ---- helpers -------------------------------------------------------------------------------------


def rpc(url: str, method: str, *params: Any) -> Any:
    """A plain blocking JSON-RPC call, straight to the node (never through a proxy)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        reply = json.loads(resp.read())
    assert "error" not in reply, reply
    return reply["result"]


class ProxyProcess:
    """`python -m orchestrator.faultproxy` as a child process (it can be killed like a real endpoint)."""

    def __init__(self, target: str, *args: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "orchestrator.faultproxy", "--target", target, *args],
                                     cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     preexec_fn=_die_with_parent)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("listening on "):
            self.proc.kill()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"fault proxy did not start: {line!r} {err}")
        self.url = line.split()[2]

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/faults", timeout=10) as resp:
            return json.loads(resp.read())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> dict[str, Any] | None:
        """Terminate; the proxy prints its final counters on the way out."""
        if self.proc.poll() is not None:
            return None
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        last = out.strip().splitlines()[-1] if out.strip() else "{}"
        return json.loads(last)


def with_credentials(url: str) -> str:
    return url.replace("http://", f"http://{RPC_USER}:{RPC_PASSWORD}@")


def scenario_text(name: str, seed: int, rpc_url: Any, agents: int = 4, refund_wait: str = "2s") -> str:
    return f"""
name: {name}
seed: {seed}
chain: {{rpc_url: {json.dumps(rpc_url)}, mining: interval, block_time: 1s, funder_key_env: DCAI_FUNDER_KEY}}
dataset: {{samples: 300, features: 100, avg_length: 6}}
incentive: {{cost_weight: 1e12, refund_wait: {refund_wait}, owner_claim_wait: 8s, any_address_claim_wait: 9s}}
agents:
  - {{policy: honest, count: {agents}, funding: 0.5 ether, samples_per_agent: 3, rate: 2/s, params: {{recheck_s: 2}}}}
schedule: {{duration: 18 blocks, max_wall_time: 80s}}
evaluation: {{every: 5 blocks, spot_checks: 1}}
outputs: {{progress: false}}
telemetry: {{mqtt: none}}
"""


def agent_addresses(seed: int, n: int) -> set[str]:
    return {LocalAccount.from_key(derive_key(seed, i)).address.lower() for i in range(n)}


def check_ledger_against_chain(run_dir: Path, node_url: str, addresses: set[str]) -> dict[str, Any]:
    """The assertions every faulted run must pass. Returns the summary."""
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed", (summary["error"], summary["errors"][:5])
    rec = summary["reconciliation"]
    assert rec["ok"] and rec["reconciled"] == rec["agents"] == len(addresses), rec
    ledger = pq.read_table(run_dir / "ledger.parquet").to_pylist()
    assert ledger, "no transaction at all"
    assert all(r["status"] in FINAL for r in ledger), [r for r in ledger if r["status"] not in FINAL]
    hashes = [r["tx_hash"] for r in ledger]
    assert len(hashes) == len(set(hashes)), "a transaction recorded twice"
    mined = {r["tx_hash"] for r in ledger if r["status"] in ("included", "reverted")}
    last = max([summary["chain"]["end_block"]] + [r["included_block"] for r in ledger])
    on_chain: list[str] = []
    for n in range(last + 1):
        block = rpc(node_url, "eth_getBlockByNumber", hex(n), True)
        on_chain += [tx["hash"] for tx in block["transactions"] if tx["from"].lower() in addresses]
    assert len(on_chain) == len(set(on_chain))
    assert set(on_chain) == mined, (f"on chain, not in the ledger: {sorted(set(on_chain) - mined)[:5]}; "
                                    f"in the ledger, not on chain: {sorted(mined - set(on_chain))[:5]}")
    return summary


@pytest.fixture
def external_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An anvil the run does not manage, mining every second, with a funder key in the environment."""
    node = AnvilNode(NodeSettings(), tmp_path / "external-anvil.log")
    url = node.start()
    try:
        rpc(url, "evm_setIntervalMining", 1)
        monkeypatch.setenv("DCAI_FUNDER_KEY", dev_accounts(3)[2].key_hex())
        yield url
    finally:
        node.stop()


# ---- the client against exact faults ---------------------------------------------------------------


async def test_truncated_and_malformed_bodies_are_retried(anvil):
    async with FaultProxy(anvil.url, FaultPlan(rate=0)) as proxy, RpcClient(proxy.url, backoff_s=0.01) as c:
        proxy.force("truncate", 4)
        for _ in range(4):
            assert await c.block_number() >= 0
        assert proxy.counts["truncate"] == 4
        assert proxy.counts["truncate_reset"] + proxy.counts["truncate_short"] == 4
        # every cut body was retried once: one fault and one good answer per call
        assert c.retried == 4 and c.requests == 8 and c.gave_up == 0
        assert sum(c.faults.values()) == 4 and set(c.faults) <= {"truncated", "malformed"}


async def test_every_fault_kind_is_survived(anvil):
    async with FaultProxy(anvil.url, FaultPlan(rate=0, delay_s=(0.01, 0.02))) as proxy, \
            RpcClient(proxy.url, backoff_s=0.01) as c:
        for kind in FAULT_KINDS:
            proxy.force(kind, 2)
            # two faults in a row, then an answer (a delay is no fault: two calls, each answered)
            for _ in range(2 if kind == "delay" else 1):
                assert await c.chain_id() == 31337
        assert all(proxy.counts[k] == 2 for k in FAULT_KINDS), proxy.stats()
        assert c.retried == 2 * (len(FAULT_KINDS) - 1) and c.gave_up == 0, c.stats()
        # a batch answered "limit exceeded" item by item: the items go again, the answer is whole
        proxy.force("rpc_error")
        assert await c.batch([("eth_chainId", []), ("eth_blockNumber", [])]) == ["0x7a69", await c.call(
            "eth_blockNumber")]
        assert c.faults["rpc_item"] == 2 and c.gave_up == 0


async def test_error_surfaces_after_the_allowed_attempts(anvil):
    async with FaultProxy(anvil.url, FaultPlan(rate=0)) as proxy, \
            RpcClient(with_credentials(proxy.url), retries=3, backoff_s=0.01) as c:
        proxy.force("http_error", 50)
        t = time.monotonic()
        with pytest.raises(RpcTransportError) as err:
            await c.block_number()
        message = str(err.value)
        assert "eth_blockNumber" in message and "after 4 attempt(s)" in message and "HTTP 50" in message
        assert RPC_PASSWORD not in message and RPC_USER not in message  # the URL is shown redacted
        assert proxy.counts["requests"] == 4 and c.gave_up == 1
        assert time.monotonic() - t < 2  # back-off is bounded


async def test_a_resent_transaction_is_confirmed_never_duplicated(anvil, chain_id):
    sender = dev_accounts(6)[5]
    async with FaultProxy(anvil.url, FaultPlan(rate=0)) as proxy, RpcClient(proxy.url, backoff_s=0.01) as c:
        start = await c.nonce(sender.address)

        def signed(k: int):
            return sign_eip1559(sender, chain_id=chain_id, nonce=start + k, max_priority_fee=10**9, max_fee=10**11,
                                gas=21_000, to=b"\x22" * 20, value=1 + k, data=b"")

        # Automine: the resend finds the transaction mined ("nonce too low").
        tx0 = signed(0)
        proxy.force("reset_after", method="eth_sendRawTransaction")
        assert await c.call("eth_sendRawTransaction", tx0.raw_hex) == tx0.hash_hex == tx_hash_of(tx0.raw_hex)
        # No mining: the resend finds it in the pool ("already imported"); a whole batch too.
        await c.call("evm_setAutomine", False)
        try:
            tx1 = signed(1)
            proxy.force("truncate", method="eth_sendRawTransaction")
            assert await c.call("eth_sendRawTransaction", tx1.raw_hex) == tx1.hash_hex
            more = [signed(k) for k in range(2, 6)]
            proxy.force("reset_after", method="eth_sendRawTransaction")
            assert await c.batch([("eth_sendRawTransaction", [t.raw_hex]) for t in more]) == [t.hash_hex for t in more]
            await c.call("evm_mine")
        finally:
            await c.call("evm_setAutomine", True)
        assert proxy.counts["sends_answer_lost"] == 6 and c.sends_confirmed == 6
        assert await c.nonce(sender.address, "latest") == start + 6  # six sent, six mined, none twice
        # A real refusal is still a refusal: a spent nonce with other bytes.
        stale = sign_eip1559(sender, chain_id=chain_id, nonce=start, max_priority_fee=10**9, max_fee=10**11,
                             gas=21_000, to=b"\x22" * 20, value=99, data=b"")
        with pytest.raises(RpcError, match="nonce too low"):
            await c.call("eth_sendRawTransaction", stale.raw_hex)


async def test_a_method_that_changes_the_node_is_not_resent(anvil):
    async with FaultProxy(anvil.url, FaultPlan(rate=0)) as proxy, RpcClient(proxy.url, backoff_s=0.01) as c:
        before = await c.block_number()
        proxy.force("reset_after", method="evm_mine")
        with pytest.raises(RpcTransportError, match="may have been applied"):
            await c.call("evm_mine")
        assert await c.block_number() == before + 1  # mined once, not once per attempt
        # A reset looks the same whether the node saw the request or not, so it is not resent either;
        # "limit exceeded" says the node did not process it: resent.
        proxy.force("reset_before", method="evm_mine")
        with pytest.raises(RpcTransportError, match="may have been applied"):
            await c.call("evm_mine")
        assert await c.block_number() == before + 1
        proxy.force("rpc_error", method="evm_mine")
        await c.call("evm_mine")
        assert await c.block_number() == before + 2 and c.retried == 1


async def test_fail_over_and_back_between_endpoints(anvil):
    first = FaultProxy(anvil.url, FaultPlan(rate=0))
    async with FaultProxy(anvil.url, FaultPlan(rate=0)) as second:
        await first.start()
        port = first.port
        assert rotate_endpoints([first.url, second.url], 1) == [second.url, first.url]
        async with RpcClient([first.url, second.url], backoff_s=0.01, cooldown_s=0.3) as c:
            await c.block_number()
            assert first.counts["requests"] == 1 and second.counts["requests"] == 0  # the first is preferred
            await first.close()  # the endpoint dies
            for _ in range(5):
                await c.block_number()
            assert c.failovers == 1 and c.gave_up == 0 and second.counts["requests"] == 5
            revived = FaultProxy(anvil.url, FaultPlan(rate=0), port=port)
            await revived.start()
            try:
                await asyncio.sleep(0.35)  # its cool-down is over: back to the preferred endpoint
                await c.block_number()
                assert revived.counts["requests"] == 1 and second.counts["requests"] == 5
            finally:
                await revived.close()


def test_fault_plan_rejects_unknown_kinds():
    with pytest.raises(ValueError, match="unknown fault kinds"):
        FaultPlan(weights={"meteor": 1.0})
    with pytest.raises(ValueError, match="rate"):
        FaultPlan(rate=1.5)


# ---- whole runs ------------------------------------------------------------------------------------


def test_run_through_a_faulty_proxy_keeps_exact_books(tmp_path, ray_cluster, external_node):
    # 20% of all requests, and half of those carrying transactions, where lost answers hurt most
    # The first transaction-carrying request has its answer lost for sure: the random draws alone hit
    # one only with some probability, since how many sends share a request depends on timing (a loaded
    # machine batches more of them into fewer requests).
    proxy = ProxyProcess(external_node, "--rate", "0.2", "--send-rate", "0.5", "--seed", "11", "--delay", "0.02:0.2",
                         "--kinds", "delay,reset_before,reset_after=2,http_error,rpc_error,truncate=2",
                         "--force", "reset_after@eth_sendRawTransaction")
    try:
        sc = load_scenario_text(scenario_text("faults", 41, proxy.url), "faults.yaml")
        run_dir = Run(sc, results_root=tmp_path / "results", run_id="faults", progress=False).execute()
        faults = proxy.stats()
    finally:
        proxy.stop()
    summary = check_ledger_against_chain(run_dir, external_node, agent_addresses(41, 4))
    injected = {k: faults[k] for k in FAULT_KINDS}
    assert all(n >= 1 for n in injected.values()), injected
    assert sum(injected.values()) >= 0.08 * faults["requests"], faults  # the rate really bit
    assert faults["sends_answer_lost"] >= 1, faults  # the node took transactions whose answer was lost
    rpc_stats = summary["node"]["rpc"]
    seen = sum(rpc_stats["driver"]["faults"].values()) + sum(rpc_stats["shards"]["faults"].values())
    assert seen >= sum(injected.values()) - injected["delay"], (rpc_stats, faults)  # every fault was met
    assert rpc_stats["driver"]["retried"] + rpc_stats["shards"]["retried"] > 0
    print(f"\nproxy: {faults}\nclient: {json.dumps(rpc_stats)}")


class BlockListener:
    """Collects the run's block telemetry in a thread of its own (the run holds the main thread),
    reconnecting whenever the broker goes away."""

    def __init__(self, port: int, topic: str):
        self.port, self.topic = port, topic
        self.numbers: list[int] = []
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._listen()), daemon=True)

    def __enter__(self) -> BlockListener:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(10)

    async def _listen(self) -> None:
        import aiomqtt

        self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
        try:
            while not self._stop.is_set():
                try:
                    async with aiomqtt.Client("127.0.0.1", self.port) as client:
                        await client.subscribe(self.topic)
                        async for m in client.messages:
                            self.numbers.append(json.loads(bytes(m.payload))["number"])
                except aiomqtt.MqttError:
                    await asyncio.sleep(0.1)
        except asyncio.CancelledError:
            pass


def test_endpoint_and_broker_outage_mid_run(tmp_path, ray_cluster, external_node):
    """Two endpoints in front of one node and an MQTT broker; once agents are at work the first
    endpoint is killed for good and the broker for two seconds. The run goes on over the second
    endpoint, publishes again once the broker is back, and its books stay exact."""
    binary = mosquitto_binary()
    if binary is None:
        pytest.skip("mosquitto is not installed (tests/setup_debian.sh installs Debian's package as root)")
    broker = Mosquitto(binary, tmp_path)
    broker.start()
    first = ProxyProcess(external_node, "--rate", "0.03", "--seed", "5")
    second = ProxyProcess(external_node, "--rate", "0.03", "--seed", "6")
    addresses = agent_addresses(42, 4)
    outage: dict[str, Any] = {}
    done = threading.Event()

    def saboteur() -> None:
        while not done.is_set():
            sent = sum(int(rpc(external_node, "eth_getTransactionCount", a, "latest"), 16) for a in addresses)
            if sent >= 2:
                outage.update(sent=sent, first=first.stats(), second=second.stats(), heard=len(listener.numbers))
                first.kill()
                broker.stop()
                time.sleep(2)
                outage["back_at_block"] = int(rpc(external_node, "eth_blockNumber"), 16)
                broker.start()  # the same port
                # The broker dies with the thread that started it (PR_SET_PDEATHSIG is per thread):
                # stay until the run is over.
                done.wait(120)
                return
            time.sleep(0.2)

    thread = threading.Thread(target=saboteur, daemon=True)
    try:
        urls = [with_credentials(first.url), with_credentials(second.url)]
        telemetry = f"telemetry: {{mqtt: '{broker.url}', reconnect_min_s: 0.1, reconnect_max_s: 0.5}}"
        text = scenario_text("endpoints", 42, urls, refund_wait="6s").replace("telemetry: {mqtt: none}", telemetry)
        sc = load_scenario_text(text, "endpoints.yaml")
        with BlockListener(broker.port, "dcai/endpoints/blocks") as listener:
            thread.start()
            run_dir = Run(sc, results_root=tmp_path / "results", run_id="endpoints", progress=False).execute()
            done.set()
            thread.join(10)
        after = second.stats()
    finally:
        done.set()
        first.kill()
        second.stop()
        broker.stop()
    assert "back_at_block" in outage, "no outage happened: no agent transaction seen"
    summary = check_ledger_against_chain(run_dir, external_node, addresses)
    # RPC: both endpoints carried the run before the kill (round-robin), the second alone after it
    assert outage["first"]["requests"] > 0 and outage["second"]["requests"] > 0
    assert after["requests"] > outage["second"]["requests"]
    rpc_stats = summary["node"]["rpc"]
    assert rpc_stats["driver"]["failovers"] + rpc_stats["shards"]["failovers"] >= 1, rpc_stats
    # Nothing is abandoned except a call that changes the node and whose answer a fault cut after
    # it was sent (a clock warp): it may have been applied, so it is never resent, and the run says so.
    log_text = (run_dir / "run.log.jsonl").read_text()
    not_resent = log_text.count("it may have been applied: not resent")
    assert rpc_stats["shards"]["gave_up"] == 0, rpc_stats
    assert rpc_stats["driver"]["gave_up"] <= not_resent, (rpc_stats, not_resent)
    assert summary["node"]["url"] == f"{first.url}, {second.url}"
    for name in ("summary.json", "scenario.json", "scenario.yaml", "run.log.jsonl"):
        text = (run_dir / name).read_text()
        assert RPC_PASSWORD not in text and f"{RPC_USER}:" not in text, name
    assert json.loads((run_dir / "scenario.json").read_text())["chain"]["rpc_url"] == [first.url, second.url]
    # MQTT: heard before the outage, lost during it, heard again after it, with later blocks
    tel = summary["telemetry"]
    assert tel["disconnects"] >= 1 and tel["reconnects"] >= 1, tel
    assert outage["heard"] > 0
    assert max(listener.numbers) > outage["back_at_block"], (listener.numbers, outage["back_at_block"])
    blocks = pq.read_table(run_dir / "blocks.parquet").column("number").to_pylist()
    assert blocks == list(range(blocks[0], blocks[-1] + 1)) and blocks[-1] == summary["chain"]["end_block"]
    print(f"\noutage at {outage['sent']} agent txs, broker back at block {outage['back_at_block']}; "
          f"telemetry: {tel}; client: {json.dumps(rpc_stats)}")
