"""An append-only log of per-transaction records on disk, readable after a crash.

Shards hand the driver what changed in their ledgers every tick (a new transaction, a status that
moved); the driver appends those rows here as Arrow IPC stream batches and flushes each one to the
operating system, so a driver killed with SIGKILL leaves every row appended before its last flush.
A transaction's later rows supersede its earlier ones (a reorg or a node restart can reopen an
outcome that looked final): the table a run reports keeps the last row of each transaction, in the
order transactions first appeared.

Arrow IPC rather than Parquet row groups: a Parquet file is unreadable until its footer is written,
while an IPC stream is readable batch by batch up to the first incomplete one.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa

from .results import WEI, WEI_COLUMNS

_ARROW_TYPES: dict[Any, pa.DataType] = {int: pa.int64(), float: pa.float64(), str: pa.string(), bool: pa.bool_()}


def schema_of(record_type: type, key: str = "tx_hash") -> pa.Schema:
    """The Arrow schema of a dataclass's fields: wei amounts exact, enums as their string values."""
    hints = typing.get_type_hints(record_type)
    fields = []
    for f in dataclasses.fields(record_type):
        if f.name in WEI_COLUMNS:
            fields.append(pa.field(f.name, WEI))
            continue
        hint = hints[f.name]
        arrow = _ARROW_TYPES.get(hint)
        if arrow is None and isinstance(hint, type) and issubclass(hint, str):
            arrow = pa.string()  # str enums (statuses) are stored by value
        if arrow is None:
            raise TypeError(f"{record_type.__name__}.{f.name}: no Arrow type for {hint!r}")
        fields.append(pa.field(f.name, arrow))
    if key not in {f.name for f in fields}:
        raise TypeError(f"{record_type.__name__} has no key column {key!r}")
    return pa.schema(fields)


def _array(values: Sequence[Any], field: pa.Field) -> pa.Array:
    if field.type == WEI:
        return pa.array([None if v is None else Decimal(int(v)) for v in values], type=WEI)
    if field.type == pa.string():
        return pa.array([None if v is None else getattr(v, "value", v) for v in values], type=pa.string())
    return pa.array(list(values), type=field.type)


class RecordLog:
    """Appends column batches to one IPC stream file. Not thread-safe: one writer, the run loop."""

    def __init__(self, path: Path, schema: pa.Schema):
        self.path = path
        self.schema = schema
        self.rows = 0
        self.batches = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO | None = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._writer: pa.ipc.RecordBatchStreamWriter | None = pa.ipc.new_stream(self._file, schema)
        # pyarrow writes the schema with the first batch: an empty one now makes the file a valid,
        # empty table from the start, whatever happens next.
        self._writer.write_batch(pa.RecordBatch.from_pylist([], schema=schema))
        self._file.flush()

    def append(self, columns: Mapping[str, Sequence[Any]]) -> int:
        """Write one batch of rows and hand it to the operating system. Returns the rows written."""
        if self._writer is None or self._file is None:
            raise RuntimeError(f"{self.path} is closed")
        n = len(columns.get(self.schema.names[0], ()))
        if n == 0:
            return 0
        arrays = []
        for field in self.schema:
            values = columns.get(field.name)
            if values is None or len(values) != n:
                raise ValueError(f"{self.path.name}: column {field.name!r} has "
                                 f"{'no values' if values is None else len(values)} rows, expected {n}")
            arrays.append(_array(values, field))
        self._writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=self.schema))
        self._file.flush()
        self.rows += n
        self.batches += 1
        return n

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._file is not None:
            self._file.close()
            self._file = None


def read_log(path: Path, key: str = "tx_hash") -> tuple[pa.Table, bool]:
    """The latest row of each key, in order of first appearance, and whether the file ended cleanly
    (False after a crash cut its last batch: the complete batches before it are still returned)."""
    batches: list[pa.RecordBatch] = []
    complete = True
    with open(path, "rb") as fh:
        try:
            reader = pa.ipc.open_stream(fh)
        except (pa.ArrowInvalid, OSError) as e:
            raise ValueError(f"{path}: not a record log ({e})") from e
        schema = reader.schema
        while True:
            try:
                batches.append(reader.read_next_batch())
            except StopIteration:
                break
            except (pa.ArrowInvalid, OSError):
                complete = False  # a batch cut short by a crash: everything before it stands
                break
    table = pa.Table.from_batches(batches, schema=schema)
    keys = table.column(key).to_pylist()
    last: dict[Any, int] = {}
    first: dict[Any, int] = {}
    for i, k in enumerate(keys):
        last[k] = i
        first.setdefault(k, i)
    rows = [last[k] for k in sorted(first, key=first.__getitem__)]
    return table.take(pa.array(rows, type=pa.int64())), complete


def read_columns(path: Path, key: str = "tx_hash") -> dict[str, list[Any]]:
    """`read_log` as Python columns, wei amounts as ints (what the results writers and readers use)."""
    table, _complete = read_log(path, key)
    return table_columns(table)


def table_columns(table: pa.Table) -> dict[str, list[Any]]:
    """An Arrow table as Python columns, wei amounts (decimal columns) as ints."""
    cols: dict[str, list[Any]] = {}
    for name in table.column_names:
        col = table.column(name)
        values = col.to_pylist()
        if pa.types.is_decimal(col.type):
            values = [None if v is None else int(v) for v in values]
        cols[name] = values
    return cols
