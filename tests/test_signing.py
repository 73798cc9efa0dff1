"""Local signing: byte-identical to eth-account, keys never shown, CREATE addresses as the node sees them."""

from __future__ import annotations

import random

import pytest
from eth_account import Account
from eth_utils import to_checksum_address

from contracts.signing import LocalAccount, contract_address, derive_key, dev_accounts, sign_eip1559
from contracts.transact import Transactor


def _random_cases(n: int) -> list[dict]:
    rng = random.Random(1234)
    cases = []
    for i in range(n):
        create = i % 3 == 0
        cases.append({
            "key": rng.randbytes(32),
            "chain_id": rng.choice([1, 31337, 11155111, 2**32 + 5]),
            "nonce": rng.choice([0, 1, rng.randrange(2**20), 2**64 - 2]),
            "max_priority_fee": rng.choice([0, 1, rng.randrange(10**12)]),
            "max_fee": rng.randrange(10**9, 10**14),
            "gas": rng.randrange(21_000, 30_000_000),
            "to": None if create else rng.randbytes(20),
            "value": 0 if i % 4 == 1 else rng.randrange(1, 10**24),
            "data": b"" if i % 5 == 2 else rng.randbytes(rng.randrange(1, 300)),
        })
    return cases


_CASES = _random_cases(12)


_IDS = [f"{i}-{'create' if c['to'] is None else 'call'}-{'value' if c['value'] else 'novalue'}"
        for i, c in enumerate(_CASES)]


@pytest.mark.parametrize("case", _CASES, ids=_IDS)
def test_sign_eip1559_matches_eth_account(case):
    acct = LocalAccount.from_key(case["key"])
    ours = sign_eip1559(acct, chain_id=case["chain_id"], nonce=case["nonce"],
                        max_priority_fee=case["max_priority_fee"], max_fee=case["max_fee"], gas=case["gas"],
                        to=case["to"], value=case["value"], data=case["data"])
    tx = {
        "type": 2,
        "chainId": case["chain_id"],
        "nonce": case["nonce"],
        "maxPriorityFeePerGas": case["max_priority_fee"],
        "maxFeePerGas": case["max_fee"],
        "gas": case["gas"],
        "value": case["value"],
        "data": case["data"],
        "accessList": [],
    }
    if case["to"] is not None:
        tx["to"] = to_checksum_address(case["to"])
    theirs = Account.sign_transaction(tx, case["key"])
    assert ours.raw == bytes(theirs.raw_transaction)
    assert ours.hash == bytes(theirs.hash)
    assert ours.raw_hex == "0x" + bytes(theirs.raw_transaction).hex()
    # the sender recovers to our address
    assert Account.recover_transaction(ours.raw) == acct.address


def test_from_key_address_and_formats():
    rng = random.Random(99)
    for _ in range(10):
        key = rng.randbytes(32)
        expected = Account.from_key(key).address
        assert LocalAccount.from_key(key).address == expected
        assert LocalAccount.from_key("0x" + key.hex()).address == expected
        assert LocalAccount.from_key(key.hex()).address == expected
        assert LocalAccount.from_key(key).key_hex() == "0x" + key.hex()
    with pytest.raises(ValueError):
        LocalAccount.from_key(b"\x01" * 31)


def test_repr_hides_the_key():
    key = bytes(range(1, 33))
    acct = LocalAccount.from_key(key)
    for text in (repr(acct), str(acct), f"{acct}", repr([acct]), repr({"a": acct})):
        assert key.hex() not in text.lower()
        assert acct.address in text


def test_dev_accounts_are_anvils():
    # anvil's documented first dev account for the public "test ... junk" mnemonic
    accts = dev_accounts(2)
    assert accts[0].address == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    assert accts[1].address == "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def test_derive_key_is_deterministic_and_distinct():
    keys = [derive_key(7, "honest", i) for i in range(50)]
    assert keys == [derive_key(7, "honest", i) for i in range(50)]
    assert len(set(keys)) == 50
    assert all(len(k) == 32 for k in keys)
    assert derive_key(7, "honest", 0) != derive_key(8, "honest", 0)
    assert derive_key(7, "honest", 0) != derive_key(7, "greedy", 0)
    assert derive_key(1, 2) != derive_key(12)  # parts are delimited, not concatenated
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    assert all(0 < int.from_bytes(k, "big") < n for k in keys)
    addrs = {LocalAccount.from_key(k).address for k in keys}
    assert len(addrs) == 50


async def test_contract_address_matches_node(client, dev, chain_id):
    acct = dev[3]
    t = Transactor(client, acct, chain_id)
    init_code = bytes.fromhex("60006000f3")  # PUSH1 0 PUSH1 0 RETURN: empty runtime code
    for _ in range(3):
        nonce = await client.nonce(acct.address)
        predicted = contract_address(acct.address_bytes, nonce)
        receipt = await t.send(None, init_code)
        assert to_checksum_address(receipt["contractAddress"]) == predicted
    # the well-known first CREATE addresses of anvil's/hardhat's first dev account
    first = bytes.fromhex("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266")
    assert contract_address(first, 0) == "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    assert contract_address(first, 1) == "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
