"""The results folder: summary.json, Parquet tables, written atomically so a crash mid-run leaves
either the previous complete file or the new complete file, never half of one."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

WEI = pa.decimal128(38, 0)  # wei amounts exceed int64 (10 ether = 1e19 wei)

# Columns holding wei amounts or gas prices: stored exactly as decimals.
WEI_COLUMNS = {"value", "deposit", "received", "max_fee", "max_priority_fee", "effective_gas_price",
               "base_fee", "expected_base_fee", "start_balance", "end_balance", "deposits", "refunds", "takes",
               "fees", "net", "ledger_flow", "refunded", "taken", "locked"}


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode())


def _column(name: str, values: Sequence[Any]) -> pa.Array:
    if name in WEI_COLUMNS:
        from decimal import Decimal

        return pa.array([None if v is None else Decimal(int(v)) for v in values], type=WEI)
    return pa.array(list(values))


def write_table(path: Path, columns: Mapping[str, Sequence[Any]], order: Sequence[str]) -> int:
    """Write columns as Parquet (atomically). Returns the row count."""
    arrays = [_column(name, columns.get(name, [])) for name in order]
    table = pa.Table.from_arrays(arrays, names=list(order))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return table.num_rows


def rows_to_columns(rows: Sequence[Any], order: Sequence[str]) -> dict[str, list[Any]]:
    return {name: [getattr(r, name) for r in rows] for name in order}


def merge_columns(parts: Sequence[Mapping[str, Sequence[Any]]], order: Sequence[str]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {name: [] for name in order}
    for part in parts:
        for name in order:
            out[name].extend(part.get(name, []))
    return out
