"""Call data for the shard's hot path without eth_abi's generic machinery.

eth_abi builds and validates every value through layers of encoder objects: about 40 µs for an
`addData(int64[],uint64)` with 10 indices, the largest single cost of a transaction in the shard
(benchmarks/profile_shard.py). The contracts' calls take only integers, integer arrays and
addresses, whose encodings are fixed 32-byte words, so a function whose inputs are all of these
types gets a direct encoder here (about 4 µs for the same call). The result is byte-identical to
`AbiFunction.encode` (tests/test_shard_abi.py), and any value the direct path is not sure about
(wrong type, out of range, an unusual address spelling) goes through `AbiFunction.encode`, which
encodes it or raises the error it always raised. Functions with other input types simply use
`AbiFunction.encode`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from eth_abi import encode as abi_encode

from contracts.abi import AbiFunction

_INT = re.compile(r"^(u?)int(\d*)$")

# A word check: (low, high, signed) bounds of an integer type.
_Bounds = tuple[int, int, bool]


def _int_bounds(t: str) -> _Bounds | None:
    m = _INT.match(t)
    if m is None:
        return None
    bits = int(m.group(2) or 256)
    if bits % 8 or not 8 <= bits <= 256:
        return None
    if m.group(1):
        return 0, (1 << bits) - 1, False
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1, True


@lru_cache(maxsize=65_536)
def _address_word(value: str) -> bytes:
    """An address argument's word, as eth_abi encodes it (its checks included), remembered: the
    few addresses of a run (agents, contributors) recur in every claim."""
    return abi_encode(["address"], [value])


class _Fallback(Exception):
    """A value the direct path does not vouch for: eth_abi decides."""


def _word(v: Any, bounds: _Bounds | None) -> bytes:
    if bounds is None:  # address
        if type(v) is not str or len(v) != 42:
            raise _Fallback
        try:
            return _address_word(v)
        except Exception:  # noqa: BLE001 - a bad address: eth_abi raises its own error for the call
            raise _Fallback from None
    if type(v) is not int:  # bool, numpy integers, floats...: eth_abi's rules
        raise _Fallback
    lo, hi, signed = bounds
    if not lo <= v <= hi:
        raise _Fallback
    return v.to_bytes(32, "big", signed=signed)


def _kind(t: str) -> tuple[bool, _Bounds | None] | None:
    """(is a dynamic array, bounds or None for address) for a supported type, else None."""
    array = t.endswith("[]")
    base = t[:-2] if array else t
    if base.endswith("]"):
        return None  # fixed-size or nested arrays: not needed here
    if base == "address":
        return array, None
    b = _int_bounds(base)
    return (array, b) if b is not None else None


def direct_encoder(fn: AbiFunction) -> Callable[..., bytes]:
    """An encoder for `fn`'s call data (selector included), byte-identical to `fn.encode`."""
    kinds = [_kind(t) for t in fn.input_types]
    if any(k is None for k in kinds):
        return fn.encode
    plan: list[tuple[bool, _Bounds | None]] = [k for k in kinds if k is not None]
    n = len(plan)
    selector = fn.selector
    head_size = 32 * n

    def encode(*args: Any) -> bytes:
        if len(args) != n:
            return fn.encode(*args)  # raises its TypeError
        try:
            heads: list[bytes] = []
            tails: list[bytes] = []
            offset = head_size
            for (array, bounds), v in zip(plan, args):
                if not array:
                    heads.append(_word(v, bounds))
                    continue
                if type(v) is not list and type(v) is not tuple:
                    raise _Fallback
                tail = len(v).to_bytes(32, "big") + b"".join([_word(x, bounds) for x in v])
                heads.append(offset.to_bytes(32, "big"))
                tails.append(tail)
                offset += len(tail)
        except _Fallback:
            return fn.encode(*args)
        return selector + b"".join(heads) + b"".join(tails)

    return encode


class Encoders:
    """Direct encoders of one contract's functions by name, made on first use."""

    def __init__(self, abi: Any):
        self._abi = abi
        self._by_name: dict[str, Callable[..., bytes]] = {}

    def encode(self, name: str, *args: Any) -> bytes:
        enc = self._by_name.get(name)
        if enc is None:
            enc = self._by_name[name] = direct_encoder(self._abi.fn(name))
        return enc(*args)
