"""Encode calls and decode results, events and revert reasons from a compiled contract's ABI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import to_checksum_address

from .signing import keccak256


def _type_str(param: dict[str, Any]) -> str:
    t = param["type"]
    if t.startswith("tuple"):
        inner = ",".join(_type_str(c) for c in param["components"])
        return f"({inner}){t[5:]}"
    return t


@dataclass(frozen=True)
class AbiFunction:
    name: str
    signature: str
    selector: bytes
    input_types: list[str]
    output_types: list[str]

    def encode(self, *args: Any) -> bytes:
        if len(args) != len(self.input_types):
            raise TypeError(f"{self.signature} takes {len(self.input_types)} arguments, got {len(args)}")
        return self.selector + abi_encode(self.input_types, list(args))

    def decode(self, data: bytes) -> Any:
        values = abi_decode(self.output_types, data)
        return values[0] if len(values) == 1 else values


@dataclass(frozen=True)
class AbiEvent:
    name: str
    signature: str
    topic: bytes
    inputs: list[dict[str, Any]]

    def decode(self, topics: list[bytes], data: bytes) -> dict[str, Any]:
        indexed = [p for p in self.inputs if p.get("indexed")]
        plain = [p for p in self.inputs if not p.get("indexed")]
        out: dict[str, Any] = {}
        for p, topic in zip(indexed, topics[1:]):
            (out[p["name"]],) = abi_decode([_type_str(p)], topic)
        for p, v in zip(plain, abi_decode([_type_str(p) for p in plain], data)):
            out[p["name"]] = v
        for k, v in out.items():
            if isinstance(v, str) and v.startswith("0x") and len(v) == 42:
                out[k] = to_checksum_address(v)
        return out


class ContractABI:
    def __init__(self, abi: list[dict[str, Any]]):
        self.abi = abi
        self.functions: dict[str, AbiFunction] = {}
        self._by_name: dict[str, list[AbiFunction]] = {}
        self.events: dict[bytes, AbiEvent] = {}
        self.events_by_name: dict[str, AbiEvent] = {}
        self.errors: dict[bytes, tuple[str, list[str]]] = {}
        for item in abi:
            kind = item.get("type")
            if kind == "function":
                ins = [_type_str(p) for p in item["inputs"]]
                sig = f"{item['name']}({','.join(ins)})"
                fn = AbiFunction(item["name"], sig, keccak256(sig.encode())[:4], ins,
                                 [_type_str(p) for p in item["outputs"]])
                self.functions[sig] = fn
                self._by_name.setdefault(item["name"], []).append(fn)
            elif kind == "event":
                sig = f"{item['name']}({','.join(_type_str(p) for p in item['inputs'])})"
                ev = AbiEvent(item["name"], sig, keccak256(sig.encode()), item["inputs"])
                self.events[ev.topic] = ev
                self.events_by_name[ev.name] = ev
            elif kind == "error":
                ins = [_type_str(p) for p in item["inputs"]]
                sig = f"{item['name']}({','.join(ins)})"
                self.errors[keccak256(sig.encode())[:4]] = (item["name"], ins)

    def fn(self, name_or_signature: str) -> AbiFunction:
        if "(" in name_or_signature:
            return self.functions[name_or_signature]
        found = self._by_name.get(name_or_signature, [])
        if len(found) != 1:
            options = [f.signature for f in found] or sorted(self._by_name)
            raise KeyError(f"function {name_or_signature!r} is {'overloaded' if found else 'unknown'}: {options}")
        return found[0]

    def encode(self, name_or_signature: str, *args: Any) -> bytes:
        return self.fn(name_or_signature).encode(*args)

    def decode_log(self, log: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        topics = [bytes.fromhex(t[2:]) for t in log.get("topics", [])]
        if not topics or topics[0] not in self.events:
            return None
        ev = self.events[topics[0]]
        return ev.name, ev.decode(topics, bytes.fromhex(log["data"][2:]))


def merge_errors(*abis: ContractABI) -> dict[bytes, tuple[str, list[str]]]:
    table: dict[bytes, tuple[str, list[str]]] = {}
    for a in abis:
        table.update(a.errors)
    return table


_ERROR_STRING = keccak256(b"Error(string)")[:4]
_PANIC = keccak256(b"Panic(uint256)")[:4]


def decode_revert(data: bytes | str | None, errors: dict[bytes, tuple[str, list[str]]]) -> str:
    """A readable revert reason: custom error with its arguments, Error(string) or Panic(code)."""
    if data is None:
        return "reverted without data"
    if isinstance(data, str):
        data = bytes.fromhex(data[2:] if data.startswith("0x") else data)
    if len(data) < 4:
        return "reverted without data" if not data else f"revert 0x{data.hex()}"
    sel, body = data[:4], data[4:]
    try:
        if sel == _ERROR_STRING:
            return abi_decode(["string"], body)[0]
        if sel == _PANIC:
            return f"Panic(0x{abi_decode(['uint256'], body)[0]:02x})"
        if sel in errors:
            name, types = errors[sel]
            args = abi_decode(types, body) if types else ()
            return f"{name}({', '.join(str(a) for a in args)})"
    except Exception:  # noqa: BLE001 - a malformed payload still gets shown raw
        pass
    return f"revert 0x{data.hex()}"
