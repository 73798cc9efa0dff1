"""Shared pieces of the benchmarks: a fresh node and system, funded senders, a block miner, the
workload (one addData call shape for every path), process CPU and memory from /proc, medians.

Everything talks to a real anvil node started from the project's pinned npm package.
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from contracts.compiler import CompileResult, compile_contracts  # noqa: E402
from contracts.deploy import DeployedSystem, SparsePerceptronSpec, StakeableSpec, deploy_system  # noqa: E402
from contracts.rpc import RpcClient, RpcError  # noqa: E402
from contracts.signing import LocalAccount, dev_accounts  # noqa: E402
from contracts.transact import Transactor  # noqa: E402
from orchestrator.nodes import AnvilNode, NodeSettings, set_mining  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
FIXED = 10**9
N_FEATURES = 200  # even features strongly positive: every benchmark sample (even indices, label 1) agrees
INDICES_PER_SAMPLE = 10
COST_WEIGHT = 1  # tiny: the deposit is at most 3,600 wei, so funding is never the question
MAX_DEPOSIT = COST_WEIGHT * 3600  # the highest deposit Stakeable can ask; the excess comes back in the call
FUNDING_WEI = 10**18  # per sender
TIP = 1_000_000_000


# ---- the workload -------------------------------------------------------------------------------

def sample(j: int) -> tuple[tuple[int, ...], int]:
    """The j-th sample of a sender: 10 even feature indices (the model agrees: label 1, no training
    update, so every add costs the same gas) and distinct for j < 100, so a sender's contributions
    never share a key."""
    return tuple(2 * ((7 * j + 13 * k) % 100) for k in range(INDICES_PER_SAMPLE)), 1


def weights() -> list[int]:
    return [(10 + i) * FIXED if i % 2 == 0 else -(10 + i) * FIXED for i in range(N_FEATURES)]


# ---- node and system ----------------------------------------------------------------------------

@dataclass
class Chain:
    node: AnvilNode
    client: RpcClient
    chain_id: int
    funder: LocalAccount
    system: DeployedSystem
    compiled: CompileResult

    @property
    def url(self) -> str:
        return self.node.url

    async def close(self) -> None:
        await self.client.close()
        await asyncio.to_thread(self.node.stop)


_COMPILED: CompileResult | None = None


_NEEDED = ("CollaborativeTrainer.sol", "SparsePerceptron.sol", "Stakeable.sol")


def _import_closure(src_dir: Path, roots: Sequence[str]) -> set[str]:
    import re

    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        text = (src_dir / name).read_text()
        for m in re.finditer(r'^import\s[^;]*?"\./([^"]+)"', text, re.M):
            todo.append(str(Path(name).parent / m.group(1)) if Path(name).parent != Path(".") else m.group(1))
    return seen


def compiled() -> CompileResult:
    """The project's contracts. If the source tree does not compile as a whole (a contract being
    edited elsewhere), compile only the ones the benchmarks deploy and what they import."""
    global _COMPILED
    if _COMPILED is None:
        from contracts.compiler import CompileError
        from contracts.toolchain import cache_dir

        try:
            _COMPILED = compile_contracts()
        except CompileError as e:
            import shutil

            from contracts.compiler import SOURCES_DIR

            first = str(e).strip().splitlines()[0] if str(e).strip() else "?"
            print(f"  (the full source tree does not compile: {first}; compiling the benchmark's contracts only)")
            tmp = Path(tempfile.mkdtemp(prefix="dcai-bench-src-"))
            for name in _import_closure(SOURCES_DIR, _NEEDED):
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(SOURCES_DIR / name, tmp / name)
            try:
                _COMPILED = compile_contracts(tmp, cache=cache_dir())
            except CompileError:
                _COMPILED = _newest_cached()
                COMPILE_NOTE.append(f"source tree did not compile; used cached artifacts {_COMPILED.cache_key[:12]}")
                print(f"  (they do not compile either: using the newest cached build {_COMPILED.cache_key[:12]})")
            else:
                COMPILE_NOTE.append("full source tree did not compile; compiled the benchmark's contracts only")
    return _COMPILED


COMPILE_NOTE: list[str] = []


def _newest_cached() -> CompileResult:
    import json

    from contracts.compiler import Artifact
    from contracts.toolchain import cache_dir

    wanted = {"CollaborativeTrainer", "SparsePerceptron", "Stakeable", "DataHandler"}
    files = sorted((cache_dir() / "solc").glob("*.json"), key=lambda f: f.stat().st_mtime, reverse=True)
    for f in files:
        data = json.loads(f.read_text())
        if wanted <= set(data.get("artifacts", {})):
            arts = {n: Artifact(name=n, abi=a["abi"], bytecode=bytes.fromhex(a["bytecode"]),
                                deployed_bytecode=bytes.fromhex(a["deployed_bytecode"]))
                    for n, a in data["artifacts"].items()}
            return CompileResult(arts, data["compiler_version"], f.stem, True)
    raise RuntimeError("the contracts do not compile and no cached build holds them")


async def fresh_chain(*, gas_limit: int, base_fee: int = 1_000_000_000, log_dir: Path | None = None) -> Chain:
    """A new anvil (automine for set-up) with a freshly deployed system."""
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="dcai-bench-"))
    node = AnvilNode(NodeSettings(gas_limit=gas_limit, base_fee=base_fee), log_dir / "anvil.log")
    await asyncio.to_thread(node.start)
    client = RpcClient(node.url, max_connections=16)
    chain_id = await client.chain_id()
    funder = dev_accounts(1)[0]
    tx = Transactor(client, funder, chain_id)
    system = await deploy_system(
        client, tx, compiled(), SparsePerceptronSpec(weights=weights()),
        StakeableSpec(refund_wait_s=86_400, owner_claim_wait_s=8 * 86_400, any_address_claim_wait_s=9 * 86_400,
                      cost_weight=COST_WEIGHT),
        gas_limit=gas_limit, name="bench",
    )
    return Chain(node, client, chain_id, funder, system, compiled())


async def fund_batched(chain: Chain, addresses: Sequence[str], amount: int = FUNDING_WEI,
                       batch: int = 500) -> float:
    """Fund senders from the dev account: pre-signed transfers in JSON-RPC batches, mined on demand
    (the benchmark's own fast funding: one base-fee read, no per-transfer RPC). Returns seconds."""
    from contracts.signing import sign_eip1559

    t0 = time.perf_counter()
    client = chain.client
    await set_mining(client, "driven")
    nonce = await client.nonce(chain.funder.address)
    head = await client.get_block("latest")
    base_fee = int(head["baseFeePerGas"], 16)
    for i in range(0, len(addresses), batch):
        txs = []
        for addr in addresses[i:i + batch]:
            txs.append(sign_eip1559(chain.funder, chain_id=chain.chain_id, nonce=nonce, max_priority_fee=TIP,
                                    max_fee=base_fee * 3 + TIP, gas=21_000, to=bytes.fromhex(addr[2:]),
                                    value=amount, data=b""))
            nonce += 1
        results = await client.batch([("eth_sendRawTransaction", [t.raw_hex]) for t in txs])
        bad = [r for r in results if isinstance(r, RpcError)]
        if bad:
            raise RuntimeError(f"funding rejected: {bad[0]}")
        await client.call("evm_mine")
        head = await client.get_block("latest")
        base_fee = int(head["baseFeePerGas"], 16)
    # everything mined? (a block holds gas_limit / 21k transfers; mine until the pool is empty)
    for _ in range(100):
        status = await client.call("txpool_status")
        if int(status["pending"], 16) == 0 and int(status["queued"], 16) == 0:
            break
        await client.call("evm_mine")
    last = addresses[-1]
    if await client.balance(last) < amount:
        raise RuntimeError("funding did not land")
    return time.perf_counter() - t0


# ---- mining -------------------------------------------------------------------------------------

class Miner:
    """Driven mining for the raw and web3 paths: mine a block every `interval_s` while running
    (a separate keep-alive client, so the sender's pool is untouched). Records each block's
    transaction count and how long `evm_mine` took."""

    def __init__(self, url: str, interval_s: float):
        self.url = url
        self.interval_s = interval_s
        self.blocks = 0
        self.mine_s = 0.0
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._mined = asyncio.Event()

    async def next_block(self, seen: int) -> None:
        """Return once more than `seen` blocks have been mined by this miner."""
        while self.blocks <= seen:
            self._mined.clear()
            await self._mined.wait()

    async def __aenter__(self) -> Miner:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        async with RpcClient(self.url, max_connections=1) as client:
            next_at = time.perf_counter() + self.interval_s
            while not self._stop.is_set():
                delay = next_at - time.perf_counter()
                if delay > 0:
                    try:
                        await asyncio.wait_for(self._stop.wait(), delay)
                        break
                    except asyncio.TimeoutError:
                        pass
                t = time.perf_counter()
                await client.call("evm_mine")
                self.mine_s += time.perf_counter() - t
                self.blocks += 1
                self._mined.set()
                next_at = max(next_at + self.interval_s, time.perf_counter())


async def wait_all_receipts(client: RpcClient, hashes: Sequence[str], *, poll_s: float = 0.05,
                            timeout_s: float = 300.0, batch: int = 1000) -> list[dict[str, Any]]:
    """Poll receipts in batches until every hash has one (mining happens elsewhere)."""
    remaining = list(hashes)
    receipts: dict[str, dict[str, Any]] = {}
    deadline = time.perf_counter() + timeout_s
    while remaining:
        missing = []
        for i in range(0, len(remaining), batch):
            chunk = remaining[i:i + batch]
            res = await client.batch([("eth_getTransactionReceipt", [h]) for h in chunk])
            for h, r in zip(chunk, res):
                if isinstance(r, dict):
                    receipts[h] = r
                else:
                    missing.append(h)
        remaining = missing
        if remaining:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{len(remaining)} transactions without receipt after {timeout_s:.0f} s")
            await asyncio.sleep(poll_s)
    return [receipts[h] for h in hashes]


# ---- processes: CPU and memory from /proc ---------------------------------------------------------

_CLK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (0 if gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            parts = fh.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / _CLK
    except (OSError, IndexError):
        return 0.0


def proc_rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, IndexError):
        return 0


def machine_busy_s() -> float:
    """CPU seconds all processes of the machine have used (user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat") as fh:
        parts = fh.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in parts[:8])
    return (user + nice + system + irq + softirq + steal) / _CLK


def foreign_load(seconds: float = 1.0) -> float:
    """Cores kept busy by other processes over a short sample (call while this process is idle)."""
    b0, t0 = machine_busy_s(), time.perf_counter()
    time.sleep(seconds)
    return (machine_busy_s() - b0) / (time.perf_counter() - t0)


def wait_quiet(max_wait_s: float, threshold: float = 0.35, sample_s: float = 1.0) -> float:
    """Wait (up to max_wait_s) until other processes use under `threshold` cores; returns the last
    load seen. Used on shared machines so one run does not measure someone else's test suite."""
    deadline = time.monotonic() + max_wait_s
    load = foreign_load(sample_s)
    while load > threshold and time.monotonic() < deadline:
        time.sleep(2.0)
        load = foreign_load(sample_s)
    return load


def children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out.extend(int(x) for x in fh.read().split())
    except OSError:
        pass
    return out


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children(p):
            out.append(c)
            todo.append(c)
    return out


def proc_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
        return cmd[:120]
    except OSError:
        return "?"


class RssSampler:
    """Samples the RSS of a set of processes (callable returning pids) every `period_s` in a thread
    and keeps the peak of their sum and of each one."""

    def __init__(self, pids: Any, period_s: float = 0.2):
        import threading

        self._pids = pids
        self.period_s = period_s
        self.peak_total = 0
        self.peak_by_pid: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> int:
        total = 0
        for pid in self._pids():
            rss = proc_rss_bytes(pid)
            total += rss
            if rss > self.peak_by_pid.get(pid, 0):
                self.peak_by_pid[pid] = rss
        self.peak_total = max(self.peak_total, total)
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.sample()

    def __enter__(self) -> RssSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


# ---- reporting ----------------------------------------------------------------------------------

def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    versions: dict[str, str] = {"python": platform.python_version()}
    for mod in ("ray", "web3", "aiohttp", "coincurve", "eth_account"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - optional
            pass
    try:
        from contracts.toolchain import anvil_binary

        versions["anvil"] = subprocess.run([str(anvil_binary()), "--version"], capture_output=True, text=True,
                                           timeout=10).stdout.strip().splitlines()[0]
    except Exception:  # noqa: BLE001
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem_gib, "os": platform.platform(),
            "versions": versions}


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}" if x == x else "n/a"
