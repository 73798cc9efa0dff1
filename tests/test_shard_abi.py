"""The shard's direct call-data encoders (agents/shard_abi.py) against eth_abi's, on the compiled
contracts' real ABIs: the same bytes for every value, the same errors for bad ones."""

from __future__ import annotations

import random

import numpy as np
import pytest

from agents.shard_abi import Encoders, direct_encoder
from contracts.abi import ContractABI
from contracts.compiler import CompileResult

CONTRACTS = ("CollaborativeTrainer", "DataHandler", "Stakeable")
ADDRESSES = ["0x" + "00" * 20, "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
             "0x70997970c51812dc3a010c7d01b50e0d17dc79c8", "0x" + "ff" * 20]


def _value(t: str, rng: random.Random) -> object:
    if t.endswith("[]"):
        return [_value(t[:-2], rng) for _ in range(rng.choice([0, 1, 3, 10, 40]))]
    if t == "address":
        return rng.choice(ADDRESSES)
    if t == "bytes32":
        return bytes(rng.getrandbits(8) for _ in range(32))
    if t == "bool":
        return rng.random() < 0.5
    bits = int(t.lstrip("uint") or 256)
    if t.startswith("u"):
        lo, hi = 0, (1 << bits) - 1
    else:
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return rng.choice([lo, hi, 0, 1, -1 if lo < 0 else 2, rng.randint(lo, hi)])


def test_same_bytes_as_eth_abi(compiled: CompileResult) -> None:
    rng = random.Random(7)
    checked = 0
    for name in CONTRACTS:
        abi = ContractABI(compiled[name].abi)
        for fn in abi.functions.values():
            enc = direct_encoder(fn)
            for _ in range(30):
                args = [_value(t, rng) for t in fn.input_types]
                assert enc(*args) == fn.encode(*args), (fn.signature, args)
                checked += 1
    assert checked > 500


def test_hot_calls_take_the_direct_path(compiled: CompileResult) -> None:
    abi = ContractABI(compiled["CollaborativeTrainer"].abi)
    for name in ("addData", "refund", "report", "predict"):
        assert direct_encoder(abi.fn(name)) is not abi.fn(name).encode


def test_unusual_values_go_through_eth_abi(compiled: CompileResult) -> None:
    abi = ContractABI(compiled["CollaborativeTrainer"].abi)
    enc = Encoders(abi)
    fn = abi.fn("addData")
    # A tuple for an array: accepted by both.
    assert enc.encode("addData", (2, 4), 1) == fn.encode([2, 4], 1)
    # Values it refuses: its own error, whatever the path.
    for args in ([[2**63], 1], [[1], -1], [[True], 1], [[1.5], 1], ["12", 1], [np.array([2, 4]), 1],
                 [[np.int64(2)], 1], [[2], np.int64(1)]):
        with pytest.raises(Exception) as direct:
            enc.encode("addData", *args)
        with pytest.raises(Exception) as reference:
            fn.encode(*args)
        assert type(direct.value) is type(reference.value)
        assert str(direct.value) == str(reference.value)
    with pytest.raises(TypeError, match="takes 2 arguments"):
        enc.encode("addData", [1])
    odd = "0x70997970C51812dc3A010C7d01b50e0d17dc79c8"  # a wrong checksum: whatever eth_abi makes of it
    assert enc.encode("report", [1], 1, 2, odd) == abi.fn("report").encode([1], 1, 2, odd)
    for bad in ("0x" + "zz" * 20, "0x1234", 5):
        with pytest.raises(Exception) as direct:
            enc.encode("report", [1], 1, 2, bad)
        with pytest.raises(Exception) as reference:
            abi.fn("report").encode([1], 1, 2, bad)
        assert str(direct.value) == str(reference.value)
