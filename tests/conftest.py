"""Shared fixtures: one compile per session, one anvil node per module, small deployments.

Everything here talks to a real anvil node started from the project's pinned npm package; nothing
is mocked. Async fixtures run on the session event loop (see pyproject.toml).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from contracts.abi import ContractABI, decode_revert
from contracts.compiler import CompileResult, compile_contracts
from contracts.deploy import DeployedSystem, SparsePerceptronSpec, StakeableSpec, deploy_system
from contracts.rpc import RpcClient, RpcError
from contracts.signing import LocalAccount, dev_accounts
from contracts.transact import Transactor
from orchestrator.nodes import AnvilNode, NodeSettings

FIXED = 10**9
N_FEATURES = 60
COST_WEIGHT = 10**9
MAX_DEPOSIT = COST_WEIGHT * 3600  # the highest deposit Stakeable can ask (elapsed <= 1 s)
DEFAULT_INCENTIVE = StakeableSpec(refund_wait_s=60, owner_claim_wait_s=120, any_address_claim_wait_s=180,
                                  cost_weight=COST_WEIGHT)


def default_weights(n: int = N_FEATURES) -> list[int]:
    """Known weights: even features strongly positive, odd features strongly negative.

    A sample of even indices predicts 1 and one of odd indices predicts 0; a single perceptron
    update (learning rate 0.5) cannot flip either.
    """
    return [(10 + i) * FIXED if i % 2 == 0 else -(10 + i) * FIXED for i in range(n)]


# ---- running under pytest-xdist (`make test` runs the suite in several worker processes) ----------


_PRIVATE_RAY_TMPDIR: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    # Each xdist worker gets its own Ray temp dir, inherited by every run and CLI subprocess it starts:
    # Ray keeps its session, sockets and the "latest cluster" address there, and two workers' Rays in
    # one temp dir could find (and join) each other's cluster. Named by the test run too, so two suites
    # running side by side on one machine do not share it either. Short: Ray's Unix sockets live
    # under it and a socket path is limited to 107 bytes.
    global _PRIVATE_RAY_TMPDIR
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        run = os.environ.get("PYTEST_XDIST_TESTRUNUID", "")[:8]
        base = Path(os.environ.get("RAY_TMPDIR") or tempfile.gettempdir())
        _PRIVATE_RAY_TMPDIR = base / f"{run}-{worker}"
        _PRIVATE_RAY_TMPDIR.mkdir(parents=True, exist_ok=True)
        os.environ["RAY_TMPDIR"] = str(_PRIVATE_RAY_TMPDIR)


def pytest_unconfigure(config: pytest.Config) -> None:
    # Ray's session logs of this worker: nothing reads them after the run.
    if _PRIVATE_RAY_TMPDIR is not None:
        shutil.rmtree(_PRIVATE_RAY_TMPDIR, ignore_errors=True)


# The slowest modules, slowest first (seconds each took under `make test`'s three workers, rounded).
# pytest-xdist hands whole modules to workers in collection order, so these go first: a long module
# picked up last would run on alone after the others finish. Not a correctness matter: a module
# missing here only runs later. Refresh from `--durations` when the suite's shape changes.
SLOW_MODULES_FIRST = (
    "test_hardhat_runs.py",  # 220
    "test_node_recovery.py",  # 140
    "test_attack_search.py",  # 125
    "test_attack_search_stop.py",  # 90
    "test_secrets.py",  # 80
    "test_rpc_faults.py",  # 70
    "test_e2e.py",  # 60
    "test_report.py",  # 57
    "test_model_types.py",  # 51
    "test_live_control.py",  # 48
    "test_sweep.py",  # 48
    "test_example_plugin.py",  # 47
    "test_models.py",  # 46
    "test_invariants.py",  # 43
    "test_compile.py",  # 42
    "test_cli.py",  # 37
    "test_soak.py",  # 36
    "test_ledger_stream.py",  # 35
    "test_replay.py",  # 34
    "test_scale.py",  # 32
    "test_flows.py",  # 31
    "test_fee_market.py",  # 31
    "test_settlement.py",  # 30
    "test_prometheus.py",  # 30
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Stable: a module's tests keep their order, and modules not listed keep theirs, after the listed.
    rank = {name: i for i, name in enumerate(SLOW_MODULES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


# ---- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def solc_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # Every xdist worker is a session of its own: they share one cache in the test run's common
        # temp folder (fresh each run), so the contracts compile once per run, not once per worker.
        # Cache files are written whole (temp file, then rename), so readers never see half of one.
        shared = tmp_path_factory.getbasetemp().parent / "solc-cache"
        shared.mkdir(exist_ok=True)
        return shared
    return tmp_path_factory.mktemp("solc-cache")


@pytest.fixture(scope="session")
def compiled(solc_cache: Path) -> CompileResult:
    # Workers start together: the first to take the lock compiles, the others then read its cache
    # instead of each running the compiler at the same time.
    with open(solc_cache / ".compile.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return compile_contracts(cache=solc_cache)


@pytest.fixture(scope="module")
def anvil(tmp_path_factory: pytest.TempPathFactory):
    node = AnvilNode(NodeSettings(), tmp_path_factory.mktemp("anvil") / "anvil.log")
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
async def client(anvil: AnvilNode):
    c = RpcClient(anvil.url)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture(scope="session")
def dev() -> list[LocalAccount]:
    return dev_accounts(10)


@pytest.fixture
async def chain_id(client: RpcClient) -> int:
    return await client.chain_id()


@pytest.fixture
async def tx(client: RpcClient, dev: list[LocalAccount], chain_id: int) -> Transactor:
    """A fresh transactor for the deployer (dev account 0); its nonce is read from the node."""
    return Transactor(client, dev[0], chain_id)


@pytest.fixture
def deploy():
    """The `deploy_small` helper, for tests that prefer a fixture to an import."""
    return deploy_small


@pytest.fixture
def add_data_events():
    return read_add_data_events


# ---- helpers (plain functions: usable from any test module) --------------------------------------


async def deploy_small(
    client: RpcClient,
    tx: Transactor,
    compiled: CompileResult,
    *,
    weights: Sequence[int] | None = None,
    incentive: StakeableSpec = DEFAULT_INCENTIVE,
    intercept: int = 0,
    learning_rate: int = FIXED // 2,
    gas_limit: int | None = None,
) -> DeployedSystem:
    """Deploy a small system (60 features with `default_weights` unless told otherwise)."""
    if gas_limit is None:
        block = await client.get_block("latest")
        assert block is not None
        gas_limit = int(block["gasLimit"], 16)
    spec = SparsePerceptronSpec(weights=list(default_weights() if weights is None else weights),
                                intercept=intercept, learning_rate=learning_rate)
    return await deploy_system(client, tx, compiled, spec, incentive, gas_limit=gas_limit)


def read_add_data_events(receipt: dict[str, Any], trainer_abi: ContractABI, trainer: str | None = None
                         ) -> list[dict[str, Any]]:
    """The decoded AddData events of a receipt (optionally only those emitted by `trainer`)."""
    out = []
    for log in receipt.get("logs", []):
        if trainer is not None and log["address"].lower() != trainer.lower():
            continue
        decoded = trainer_abi.decode_log(log)
        if decoded is not None and decoded[0] == "AddData":
            out.append(decoded[1])
    return out


async def revert_reason(client: RpcClient, system: DeployedSystem, sender: str, to: str, data: bytes,
                        value: int = 0, tag: str = "latest") -> str | None:
    """Run the call with eth_call from `sender`; the decoded revert reason, or None if it succeeds."""
    call = {"from": sender, "to": to, "data": "0x" + data.hex(), "value": hex(value)}
    try:
        await client.call("eth_call", call, tag)
    except RpcError as e:
        return decode_revert(e.data if isinstance(e.data, str) else None, system.errors)
    return None


async def latest_timestamp(client: RpcClient) -> int:
    block = await client.get_block("latest")
    assert block is not None
    return int(block["timestamp"], 16)


async def set_next_timestamp(client: RpcClient, ts: int) -> None:
    await client.call("evm_setNextBlockTimestamp", ts)


@pytest.fixture(scope="module")
def ray_cluster():
    """A private Ray for one test module (runs join it instead of starting their own); left alone
    if something else already started one."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield
    if started and ray.is_initialized():
        ray.shutdown()
