"""Helpers shared by the model families: range checks and chunking for specs, batched view reads
and the contracts' integer rules for twins, and field access with precise errors for model files.

Only what two or more families use lives here; each family's own rules stay in its module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..abi import ContractABI
from ..deploy import FIXED_POINT, DeploymentError
from ..encoders import round_half_up
from ..rpc import RpcClient

INT64 = (-(2**63), 2**63 - 1)
INT80 = (-(2**79), 2**79 - 1)
UINT32_MAX = 2**32 - 1
UINT64_MAX = 2**64 - 1
ONE = 10**9
ONE_SQUARED = 10**18
NORM_TOLERANCE = 10**11
READ_CHUNK = 4_000  # items per eth_call: keeps each view call far below any node's call gas cap
_CHUNK_BUDGET = 0.5  # share of the block gas limit one initialisation chunk may use
GAS_PER_PACKED_WORD = 26_000  # one whole fresh slot (read first: it must be empty) plus calldata


# ---- specs ---------------------------------------------------------------------------------------


class ModelSpecError(ValueError):
    """A model description the contracts cannot hold (the message names the field)."""


def check_range(what: str, values: Sequence[int], lo: int, hi: int) -> None:
    for i, v in enumerate(values):
        if not isinstance(v, int) or isinstance(v, bool):
            raise ModelSpecError(f"{what}[{i}] must be an integer, got {type(v).__name__}")
        if not lo <= v <= hi:
            raise ModelSpecError(f"{what}[{i}] = {v} is outside [{lo}, {hi}]")


def budget_items(gas_limit: int, per_item: int, multiple: int) -> int:
    """Items per initialisation transaction: half the block gas limit, whole packed slots."""
    size = int(gas_limit * _CHUNK_BUDGET) // per_item
    size -= size % multiple
    if size < multiple:
        raise DeploymentError(f"block gas limit {gas_limit} is too small to initialise the model")
    return size


def check_classes(classifications: Sequence[str], n: int | None = None) -> None:
    if not classifications:
        raise ModelSpecError("classifications: at least one class is required")
    if n is not None and len(classifications) != n:
        raise ModelSpecError(f"classifications: {len(classifications)} names for {n} classes")


def packed_calls(abi: ContractABI, fn: str, words: dict[tuple[int, int], int], gas_limit: int,
                 what: str) -> list[tuple[str, bytes]]:
    """Initialisation calls of a model stored as packed words keyed by (class group, slot)."""
    size = budget_items(gas_limit, GAS_PER_PACKED_WORD, 1)
    calls: list[tuple[str, bytes]] = []
    for g in sorted({g for g, _ in words}):
        groups = sorted(q for gg, q in words if gg == g)
        for s in range(0, len(groups), size):
            chunk = groups[s:s + size]
            calls.append((f"initialise {what} of classes {2 * g}-{2 * g + 1}, slots {s}..{s + len(chunk) - 1}",
                          abi.encode(fn, g, chunk, [words[(g, q)] for q in chunk])))
    return calls


def int_keys(per_class: Sequence[dict[Any, Any]]) -> list[dict[int, int]]:
    # JSON object keys are text; the specs index features by integer.
    return [{int(f): int(n) for f, n in c.items()} for c in per_class]


# ---- twins ---------------------------------------------------------------------------------------


class ModelRevert(ValueError):
    """The contract would revert on this input or update; `error` is its custom error's name."""

    def __init__(self, error: str, detail: str = ""):
        super().__init__(f"{error}: {detail}" if detail else error)
        self.error = error


def block_tag(block: int | str) -> str:
    return hex(block) if isinstance(block, int) else block


async def read_views(client: RpcClient, address: str, abi: ContractABI,
                     calls: Sequence[tuple[str, tuple[Any, ...]]], block: int | str) -> list[Any]:
    """Several view calls to one contract at one block, in one JSON-RPC batch."""
    tag = block_tag(block)
    replies = await client.batch([("eth_call", [{"to": address, "data": "0x" + abi.encode(fn, *args).hex()}, tag])
                                  for fn, args in calls])
    out = []
    for (fn, _), r in zip(calls, replies):
        if isinstance(r, Exception):
            raise r
        out.append(abi.fn(fn).decode(bytes.fromhex(r[2:])))
    return out


async def read_class_state(client: RpcClient, model: str, abi: ContractABI, block: int | str, *extra: str
                           ) -> tuple[list[int], list[int], int, int]:
    res = await read_views(client, model, abi, [("getClassInfos", ()), *((name, ()) for name in extra)], block)
    (num_samples, second), a, b = res[0], res[1], res[2]
    return [int(x) for x in num_samples], [int(x) for x in second], int(a), int(b)


def tdiv(a: int, b: int) -> int:
    """Integer division truncated toward zero, as Solidity's signed division."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def dense_checked(sample: Sequence[int], n: int) -> list[int]:
    """The dense models' input check: length, int64 values, |sum d^2 - 1e18| < 1e11."""
    if len(sample) != n:
        raise ModelRevert("DimensionMismatch", f"{len(sample)} values, expected {n}")
    values = [int(v) for v in sample]
    for i, v in enumerate(values):
        if not INT64[0] <= v <= INT64[1]:
            raise ModelRevert("MalformedValue", f"value {i} = {v} is not an int64")
    norm = sum(v * v for v in values)
    if abs(norm - ONE_SQUARED) >= NORM_TOLERANCE:
        raise ModelRevert("NotUnitNorm", f"sum of squares {norm}")
    return values


# ---- model files ---------------------------------------------------------------------------------

DEFAULT_LEARNING_RATE = 0.5
DEFAULT_SMOOTHING = 1.0


class ModelFileError(ValueError):
    pass


class FileReader:
    """Field access on a parsed model file with errors that name the file and the field."""

    def __init__(self, data: Any, source: str):
        self.source = source
        if not isinstance(data, dict):
            self.fail("", f"a model file holds a JSON object, got {type(data).__name__}")
        self.data: dict[str, Any] = data

    def fail(self, field: str, problem: str) -> None:
        where = f"{self.source}: {field}: " if field else f"{self.source}: "
        raise ModelFileError(where + problem)

    def get(self, field: str, default: Any = ..., *, kind: type | tuple[type, ...] | None = None) -> Any:
        if field not in self.data:
            if default is ...:
                self.fail(field, "missing")
            return default
        value = self.data[field]
        if kind is not None and not isinstance(value, kind):
            self.fail(field, f"expected {_kind_name(kind)}, got {type(value).__name__}")
        return value

    def real(self, field: str, value: Any, bounds: tuple[int, int] | None = None) -> int:
        """A JSON number as fixed point x1e9; `bounds` the contract's integer type for it, so a value
        it cannot hold is named here, in the file's units, rather than as a raw integer later."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(field, f"expected a number, got {value!r}")
        fixed = value * FIXED_POINT if isinstance(value, int) else round_half_up(value * FIXED_POINT)
        if bounds is not None and not bounds[0] <= fixed <= bounds[1]:
            bits = {INT80: "int80", INT64: "int64"}.get(bounds, "integer")
            self.fail(field, f"{value!r} is out of range: the contract holds it as {bits} fixed point "
                             f"(x1e9), i.e. between {bounds[0] / FIXED_POINT:.6g} and {bounds[1] / FIXED_POINT:.6g}")
        return fixed

    def count(self, field: str, value: Any) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.fail(field, f"expected a non-negative integer, got {value!r}")
        return int(value)

    def index(self, field: str, key: Any) -> int:
        """A feature index: an integer, or a string of digits (JSON object keys are strings)."""
        if isinstance(key, int) and not isinstance(key, bool):
            idx = key
        elif isinstance(key, float) and key.is_integer():
            idx = int(key)
        elif isinstance(key, str) and key.strip().isdigit():
            idx = int(key)
        else:
            self.fail(field, f"feature index {key!r} is not a non-negative integer")
        if idx < 0:
            self.fail(field, f"feature index {key!r} is negative")
        return idx

    def classifications(self) -> tuple[str, ...]:
        names = self.get("classifications", kind=list)
        if not names or not all(isinstance(n, str) for n in names):
            self.fail("classifications", "expected a non-empty list of class names")
        return tuple(names)

    def centroids(self) -> list[tuple[str, Any, int]]:
        """The nearest-centroid files' {class name: {"centroid": ..., "dataCount": n}}."""
        centroids = self.get("centroids", kind=dict)
        if not centroids:
            self.fail("centroids", "no classes")
        out = []
        for name, info in centroids.items():
            where = f"centroids[{name!r}]"
            if not isinstance(info, dict) or "centroid" not in info:
                self.fail(where, "expected {\"centroid\": ..., \"dataCount\": n}")
            out.append((name, info["centroid"], self.count(f"{where}.dataCount", info.get("dataCount", 0))))
        return out


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def file_real(v: int) -> float | int:
    """A fixed-point integer back to the file's real number (integers stay integers)."""
    return v // FIXED_POINT if v % FIXED_POINT == 0 else v / FIXED_POINT


def class_names(ds: Any) -> tuple[str, ...]:
    # The perceptron contracts' two names stay the ones they always had; multi-class models name
    # each class by its label value.
    return ("Negative", "Positive") if ds.n_classes == 2 else tuple(ds.class_names)
