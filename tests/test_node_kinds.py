"""Node kinds on real nodes: the managed Hardhat node (start, settings, control, stop, dies with its
parent), what each kind claims it can do against what it really does, the external kind's probe, and
the registry."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from contracts.rpc import RpcClient, RpcError, RpcTransportError
from contracts.signing import dev_accounts
from contracts.transact import Transactor
from orchestrator.nodes import (
    ALL_CAPABILITIES,
    BASE_FEE_CONTROL,
    DROP_TX,
    MINING_CONTROL,
    REORG,
    STATE_DUMP,
    TXPOOL,
    AnvilNode,
    ExternalNode,
    HardhatNode,
    NodeError,
    NodeSettings,
    UnsupportedByNode,
    make_node,
    managed_kinds,
    node_kind,
    process_alive,
)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def hardhat(tmp_path_factory: pytest.TempPathFactory):
    node = HardhatNode(NodeSettings(accounts=4), tmp_path_factory.mktemp("hardhat") / "hardhat.log")
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
async def hh(hardhat: HardhatNode):
    async with RpcClient(hardhat.url) as c:
        yield c


async def test_hardhat_starts_with_the_settings(tmp_path):
    s = NodeSettings(chain_id=4242, gas_limit=12_345_678, base_fee=7 * 10**9, accounts=3, balance_ether=7,
                     genesis_timestamp=1_900_000_000, no_mining=True)
    with HardhatNode(s, tmp_path / "run" / "hardhat.log") as node:
        assert node.running and node.port and (tmp_path / "run" / "hardhat.config.js").exists()
        async with RpcClient(node.url) as c:
            assert (await c.call("web3_clientVersion")).startswith("HardhatNetwork/")
            assert await c.chain_id() == 4242
            block = await c.get_block("latest")
            assert int(block["gasLimit"], 16) == 12_345_678
            assert int(block["baseFeePerGas"], 16) == 7 * 10**9
            assert int(block["timestamp"], 16) == 1_900_000_000
            accounts = await c.call("eth_accounts")
            # The same dev accounts as anvil's: set-up code funds from account 0 on either node.
            assert [a.lower() for a in accounts] == [a.address.lower() for a in dev_accounts(3)]
            assert await c.balance(accounts[0]) == 7 * 10**18
            # no_mining: a transaction waits in the pool until a block is mined on demand
            t = Transactor(c, dev_accounts(1)[0], 4242)
            signed = await t.sign(accounts[1], b"", value=1, gas=21_000, base_fee=10 * 10**9)
            await c.call("eth_sendRawTransaction", signed.raw_hex)
            await asyncio.sleep(0.5)
            assert await c.block_number() == 0
            await node.mine(c, 1_900_000_012)
            assert await c.block_number() == 1
            assert int((await c.get_block(1))["timestamp"], 16) == 1_900_000_012
            assert (await c.call("eth_getTransactionReceipt", signed.hash_hex))["status"] == "0x1"
        with pytest.raises(NodeError):
            node.start()  # one process per node object
    assert not node.running


def test_hardhat_stop_terminates_and_is_idempotent(hardhat, tmp_path):
    node = HardhatNode(NodeSettings(), tmp_path / "hardhat.log")
    node.start()
    pid = node.proc.pid
    assert process_alive(pid)
    node.stop()
    assert not process_alive(pid) and not node.running
    node.stop()


def test_hardhat_dies_with_its_parent(tmp_path):
    """A parent killed with SIGKILL cannot stop its node: the node must go by itself."""
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from orchestrator.nodes import HardhatNode, NodeSettings\n"
        f"n = HardhatNode(NodeSettings(), Path({str(tmp_path / 'hh.log')!r}))\n"
        "n.start()\nprint(n.proc.pid, flush=True)\ntime.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
    try:
        node_pid = int(parent.stdout.readline())
        assert process_alive(node_pid)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 10
    while process_alive(node_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not process_alive(node_pid)


def test_prune_history_refused_on_hardhat(tmp_path):
    with pytest.raises(NodeError, match="prune_history"):
        HardhatNode(NodeSettings(prune_history=8), tmp_path / "hardhat.log").start()


async def test_hardhat_mining_modes(hardhat, hh):
    await hardhat.set_mining(hh, "interval", 1)
    try:
        n0 = await hh.block_number()
        deadline = time.monotonic() + 6
        while await hh.block_number() < n0 + 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert await hh.block_number() >= n0 + 2  # seconds, not Hardhat's milliseconds
        t0 = time.monotonic()
        n1 = await hh.block_number()
        await asyncio.sleep(2.2)
        assert await hh.block_number() - n1 <= 3  # about one a second, not one a millisecond
        assert time.monotonic() - t0 < 5
        await hardhat.set_mining(hh, "driven")
        n2 = await hh.block_number()
        signed = await Transactor(hh, dev_accounts(2)[1], 31337).sign(dev_accounts(3)[2].address, b"", value=1,
                                                                      gas=21_000, base_fee=20 * 10**9)
        await hh.call("eth_sendRawTransaction", signed.raw_hex)
        await asyncio.sleep(1.5)
        assert await hh.block_number() == n2  # neither interval nor automine
        await hardhat.mine(hh)
        assert (await hh.call("eth_getTransactionReceipt", signed.hash_hex))["status"] == "0x1"
    finally:
        await hardhat.set_mining(hh, "auto")


async def test_hardhat_control_it_claims(hardhat, hh):
    await hardhat.set_mining(hh, "driven")
    try:
        await hardhat.set_next_base_fee(hh, 3 * 10**9)
        await hardhat.mine(hh)
        assert int((await hh.get_block("latest"))["baseFeePerGas"], 16) == 3 * 10**9
        await hardhat.set_gas_limit(hh, 25_000_000)
        await hardhat.mine(hh)
        assert int((await hh.get_block("latest"))["gasLimit"], 16) == 25_000_000
        head = int((await hh.get_block("latest"))["timestamp"], 16)
        await hardhat.increase_time(hh, 1000)
        await hardhat.mine(hh)
        assert int((await hh.get_block("latest"))["timestamp"], 16) >= head + 1000
        signed = await Transactor(hh, dev_accounts(3)[2], 31337).sign(dev_accounts(1)[0].address, b"", value=1,
                                                                      gas=21_000, base_fee=20 * 10**9)
        await hh.call("eth_sendRawTransaction", signed.raw_hex)
        assert (await hh.call("eth_getTransactionByHash", signed.hash_hex)) is not None
        await hardhat.drop_transactions(hh, [signed.hash_hex])
        assert (await hh.call("eth_getTransactionByHash", signed.hash_hex)) is None
        await hardhat.set_gas_limit(hh, 30_000_000)
        await hardhat.mine(hh)
    finally:
        await hardhat.set_mining(hh, "auto")


async def test_hardhat_lacks_what_it_does_not_claim(hardhat, hh):
    """Each capability Hardhat does not claim is really missing: the claim is measured, not assumed."""
    assert TXPOOL not in hardhat.capabilities and STATE_DUMP not in hardhat.capabilities
    for method, params in (("txpool_content", []), ("txpool_status", []), ("anvil_dumpState", []),
                           ("anvil_reorg", [1, []]), ("eth_getBlockReceipts", ["0x0"]),
                           ("eth_getRawTransactionByHash", ["0x" + "00" * 32])):
        with pytest.raises(RpcError, match="not supported"):
            await hh.call(method, *params)
    for op in (hardhat.pool_content(hh), hardhat.dump_state(hh), hardhat.reorg(hh, 1)):
        with pytest.raises(UnsupportedByNode, match="node kind 'hardhat' lacks"):
            await op
    with pytest.raises(UnsupportedByNode):
        hardhat.restart(Path("nowhere.json"))
    assert hardhat.running  # a refused restart leaves the node as it was


async def test_anvil_claims_everything_and_does_it(tmp_path):
    assert AnvilNode.capabilities == ALL_CAPABILITIES
    with AnvilNode(NodeSettings(no_mining=True), tmp_path / "anvil.log") as node:
        async with RpcClient(node.url) as c:
            await node.set_next_base_fee(c, 5 * 10**9)
            await node.mine(c, 1_900_000_000)
            block = await c.get_block("latest")
            assert int(block["baseFeePerGas"], 16) == 5 * 10**9 and int(block["timestamp"], 16) == 1_900_000_000
            signed = await Transactor(c, dev_accounts(1)[0], 31337).sign(dev_accounts(2)[1].address, b"", value=1,
                                                                         gas=21_000, base_fee=20 * 10**9)
            await c.call("eth_sendRawTransaction", signed.raw_hex)
            content = await node.pool_content(c)
            assert signed.hash_hex in str(content)
            await node.drop_transactions(c, [signed.hash_hex])
            assert await c.call("eth_getTransactionByHash", signed.hash_hex) is None
            assert (await node.dump_state(c))[:2] == b"\x1f\x8b"  # gzip
            await node.mine(c)
            await node.mine(c)
            before = (await c.get_block(3))["hash"]
            await node.reorg(c, 1)
            assert await c.block_number() == 3 and (await c.get_block(3))["hash"] != before


async def test_external_node_probes_its_capabilities(hardhat, tmp_path):
    ext = ExternalNode(hardhat.url)
    assert ext.start() == hardhat.url and not ext.managed
    async with RpcClient(ext.url) as c:
        caps = await ext.probe(c)
        assert caps == HardhatNode.capabilities - {MINING_CONTROL}
        assert BASE_FEE_CONTROL in caps and DROP_TX in caps and TXPOOL not in caps
        await ext.set_next_base_fee(c, 10**9)  # spoken in Hardhat's dialect
    ext.stop()  # not ours: the node keeps running
    assert hardhat.running
    with AnvilNode(NodeSettings(), tmp_path / "anvil.log") as node:
        ext = ExternalNode([node.url])
        async with RpcClient(node.url) as c:
            assert await ext.probe(c) == ALL_CAPABILITIES - {MINING_CONTROL}
            assert REORG in ext.capabilities and ext.has(TXPOOL)
    with pytest.raises(RpcTransportError):  # a node that is gone is not silently capability-less
        async with RpcClient(node.url, retries=0) as c:
            await ExternalNode(node.url).probe(c)


def test_registry(tmp_path):
    assert managed_kinds() == ["anvil", "hardhat"]
    assert node_kind("hardhat") is HardhatNode and node_kind("anvil") is AnvilNode
    with pytest.raises(NodeError, match="unknown node kind 'geth'; known: anvil, external, hardhat"):
        node_kind("geth")
    with pytest.raises(NodeError, match="chain.rpc_url"):
        make_node("external", NodeSettings())
    node = make_node("hardhat", NodeSettings(), tmp_path / "x.log")
    assert isinstance(node, HardhatNode) and node.proc is None


def _scenario(chain: str, extra: str = "") -> str:
    return (f"name: x\nchain: {chain}\nagents: [{{policy: honest, count: 1}}]\n"
            f"schedule: {{duration: 5 blocks{extra}}}\n")


def test_chain_node_validation_names_the_line_and_the_capability():
    from orchestrator.scenario import ScenarioError, load_scenario_text

    assert load_scenario_text(_scenario("{node: hardhat, mining: driven}"), "s.yaml").chain.node == "hardhat"
    assert load_scenario_text(_scenario("{mining: driven}"), "s.yaml").chain.node == "anvil"
    cases = {
        "{node: geth}": "s.yaml:2:15: chain.node: unknown node kind 'geth'; known: anvil, external, hardhat",
        "{node: external}": "s.yaml:2:15: chain.node: node 'external': give an external node's URL as "
                            "chain.rpc_url",
        "{rpc_url: 'http://127.0.0.1:1', node: hardhat}": "chain.node: node: chain.rpc_url is set",
        "{node: hardhat, prune_history: 64}": "chain.node 'hardhat': chain.prune_history needs the node "
                                              "capability 'prune_history', which node kind 'hardhat' lacks",
    }
    for chain, message in cases.items():
        with pytest.raises(ScenarioError) as e:
            load_scenario_text(_scenario(chain), "s.yaml")
        assert message in str(e.value), str(e.value)
    with pytest.raises(ScenarioError, match="chaos event 'kill_node' needs the node capability 'state_dump'"):
        load_scenario_text(_scenario("{node: hardhat, mining: driven}", ", chaos: [{at: 2, event: kill_node}]"),
                           "s.yaml")
    # The same events are fine on anvil, and kill_shard is fine on Hardhat (adoption degrades, see
    # tests/test_hardhat_runs.py).
    load_scenario_text(_scenario("{mining: driven}", ", chaos: [{at: 2, event: kill_node}]"), "s.yaml")
    load_scenario_text(_scenario("{node: hardhat}", ", chaos: [{at: 2, event: kill_shard}]"), "s.yaml")


def test_a_node_kind_from_an_installed_entry_point(tmp_path):
    """A package registering `dcai.nodes` (here a dist-info on the path, as pip would leave it) adds a
    kind that `chain.node` accepts; one that tries to take a built-in's name is refused."""
    (tmp_path / "mynodes.py").write_text(
        "from orchestrator.nodes import AnvilNode\n"
        "class SlowAnvil(AnvilNode):\n"
        "    name = 'slow_anvil'\n"
        "    capabilities = AnvilNode.capabilities - {'reorg'}\n")
    dist = tmp_path / "mynodes-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mynodes\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[dcai.nodes]\nslow_anvil = mynodes:SlowAnvil\n")
    check = (
        "from orchestrator.nodes import managed_kinds\n"
        "from orchestrator.scenario import load_scenario_text, ScenarioError\n"
        "print(managed_kinds())\n"
        "s = 'name: x\\nchain: {node: slow_anvil}\\nagents: [{policy: honest, count: 1}]\\n'\n"
        "print(load_scenario_text(s + 'schedule: {duration: 5}\\n', 's.yaml').chain.node)\n"
        "try:\n"
        "    load_scenario_text(s + 'schedule: {duration: 5, chaos: [{at: 2, event: reorg, blocks: 1}]}\\n', 's.yaml')\n"
        "except ScenarioError as e:\n"
        "    print(e)\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{tmp_path}"}
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=env, cwd=REPO,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "['anvil', 'hardhat', 'slow_anvil']" and lines[1] == "slow_anvil"
    assert "'reorg' needs the node capability 'reorg', which node kind 'slow_anvil' lacks" in lines[2]
    (dist / "entry_points.txt").write_text("[dcai.nodes]\nanvil = mynodes:SlowAnvil\n")
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=env, cwd=REPO,
                         timeout=60)
    assert out.returncode != 0 and "would replace the built-in node kind" in out.stderr


async def test_pool_view_on_nodes_with_and_without_txpool(hardhat, tmp_path):
    """The shard's view of the pool: txpool methods on anvil, the pending block on Hardhat (which
    misses what waits behind a nonce gap, as documented)."""
    from agents.pool import PENDING_BLOCK, TXPOOL, PoolView

    with AnvilNode(NodeSettings(no_mining=True), tmp_path / "anvil.log") as node:
        for url, mine_ctl, source, sees_gap in ((node.url, node, TXPOOL, True),
                                                (hardhat.url, hardhat, PENDING_BLOCK, False)):
            async with RpcClient(url) as c:
                await mine_ctl.set_mining(c, "driven")
                try:
                    t = Transactor(c, dev_accounts(4)[3], 31337)
                    sent = []
                    for _ in range(3):
                        s = await t.sign(dev_accounts(1)[0].address, b"", value=1, gas=21_000, base_fee=10**10)
                        await c.call("eth_sendRawTransaction", s.raw_hex)
                        sent.append(s.hash_hex)
                    t.nonce += 1  # a gap: the next one waits behind it
                    s = await t.sign(dev_accounts(1)[0].address, b"", value=1, gas=21_000, base_fee=10**10)
                    await c.call("eth_sendRawTransaction", s.raw_hex)
                    view = PoolView()
                    assert await view.pending_count(c) == 3 and view.source == source
                    seen = {tx["hash"] for tx in await view.transactions(c)}
                    assert set(sent) <= seen and (s.hash_hex in seen) == sees_gap
                    await mine_ctl.drop_transactions(c, [*sent, s.hash_hex])
                finally:
                    await mine_ctl.set_mining(c, "auto")


async def test_hardhat_set_up_mode_takes_a_batch_of_one_senders_transactions(tmp_path):
    """Hardhat's server runs a batch's items concurrently and its automine refuses a nonce ahead, so
    the set-up mode ("auto") must queue: every transfer of every batch lands, in nonce order."""
    a, b = dev_accounts(2)
    with HardhatNode(NodeSettings(), tmp_path / "hardhat.log") as node:
        async with RpcClient(node.url) as c:
            await node.set_mining(c, "interval", 1)
            await node.set_mining(c, "auto")  # and back, as a run's set-up and restarts do
            t = Transactor(c, a, 31337)
            for _ in range(5):
                base_fee = await t.base_fee()
                batch = [await t.sign(b.address, b"", value=1, gas=21_000, base_fee=base_fee) for _ in range(20)]
                receipts = await t.send_many(batch)
                assert all(r["status"] == "0x1" for r in receipts)
            assert int(await c.call("eth_getTransactionCount", a.address, "latest"), 16) == 100
