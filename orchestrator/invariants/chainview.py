"""What changed in the system over a block range, read once per check for every invariant.

One `eth_getLogs` over the trainer (or market) and the incentive mechanism per range (chunked for a
long catch-up), and for the blocks with claims one batch of `eth_getTransactionByHash`: the claim's
call arguments name the contribution (the Refund / Report events do not), so its data handler key
can be computed exactly as the contract does.
"""

from __future__ import annotations

from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import to_checksum_address

from contracts.abi import ContractABI
from contracts.deploy import DeployedSystem
from contracts.rpc import RpcClient
from contracts.signing import keccak256

from .base import ChangeView, Claim, Contribution

LOG_CHUNK = 2_000  # blocks per eth_getLogs
CLAIM_EVENTS = {"Refund": "refund", "Report": "report"}


def contribution_key(data: list[int] | tuple[int, ...], label: int, added_time: int, author: str) -> bytes:
    """keccak256(abi.encodePacked(int64[] data, uint64 label, uint256 addedTime, address author)):
    the DataHandler's key (array elements are padded to 32 bytes each by encodePacked)."""
    packed = b"".join(int(v).to_bytes(32, "big", signed=True) for v in data)
    packed += int(label).to_bytes(8, "big") + int(added_time).to_bytes(32, "big") + bytes.fromhex(author[2:])
    return keccak256(packed)


def _abis(system: DeployedSystem) -> dict[str, ContractABI]:
    """address (lower case) -> ABI of the contracts whose events the invariants read."""
    out = {system.trainer.lower(): system.abis["CollaborativeTrainer"]}
    if system.incentive and system.incentive.lower() != system.trainer.lower():
        out[system.incentive.lower()] = system.incentive_abi
    return out


async def read_changes(client: RpcClient, system: DeployedSystem, mechanism: str, first: int, last: int) -> ChangeView:
    """The system's events in blocks (first, last] and the contributions and claims they stand for."""
    view = ChangeView(first, last)
    if last <= first:
        return view
    abis = _abis(system)
    raw: list[dict[str, Any]] = []
    for start in range(first + 1, last + 1, LOG_CHUNK):
        raw.extend(await client.call("eth_getLogs", {"address": list(abis), "fromBlock": hex(start),
                                                     "toBlock": hex(min(start + LOG_CHUNK - 1, last))}))
    raw.sort(key=lambda lg: (int(lg["blockNumber"], 16), int(lg["logIndex"], 16)))
    market = mechanism == "prediction_market"
    claim_logs: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    for lg in raw:
        abi = abis.get(lg["address"].lower())
        decoded = abi.decode_log(lg) if abi is not None else None
        if decoded is None:
            continue
        name, args = decoded
        view.logs.append((name, args, lg))
        if name == "AddData":
            author = to_checksum_address(args["sender"])
            data = tuple(int(x) for x in args["d"])
            key = b"" if market else contribution_key(data, int(args["c"]), int(args["t"]), author)
            view.contributions.append(Contribution(key, author, int(args["c"]), int(args["t"]), int(args["cost"]),
                                                   data, int(lg["blockNumber"], 16), lg["transactionHash"]))
        elif name in CLAIM_EVENTS and not market:
            claim_logs.append((name, args, lg))
    if claim_logs:
        view.claims = await _claims(client, system, claim_logs)
    return view


async def _claims(client: RpcClient, system: DeployedSystem,
                  logs: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> list[Claim]:
    hashes = list(dict.fromkeys(lg["transactionHash"] for _, _, lg in logs))
    txs = dict(zip(hashes, await client.batch([("eth_getTransactionByHash", [h]) for h in hashes])))
    trainer_abi = system.abis["CollaborativeTrainer"]
    fns = {trainer_abi.fn(n).selector: trainer_abi.fn(n) for n in ("refund", "report")}
    per_tx: dict[str, int] = {}
    for _, _, lg in logs:
        per_tx[lg["transactionHash"]] = per_tx.get(lg["transactionHash"], 0) + 1
    out = []
    for name, args, lg in logs:
        tx = txs.get(lg["transactionHash"])
        claimer = to_checksum_address(args["recipient"])
        key = author = None
        # A transaction straight to the trainer makes exactly one claim: its arguments name it.
        if (isinstance(tx, dict) and (tx.get("to") or "").lower() == system.trainer.lower()
                and per_tx[lg["transactionHash"]] == 1):
            payload = bytes.fromhex(tx["input"][2:])
            fn = fns.get(payload[:4])
            if fn is not None:
                values = abi_decode(fn.input_types, payload[4:])
                data, label, added = values[0], values[1], values[2]
                author = to_checksum_address(values[3]) if fn.name == "report" else to_checksum_address(tx["from"])
                key = contribution_key(data, label, added, author)
        out.append(Claim(CLAIM_EVENTS[name], claimer, int(args.get("amount", 0)), key, author,
                         int(lg["blockNumber"], 16), lg["transactionHash"]))
    return out
