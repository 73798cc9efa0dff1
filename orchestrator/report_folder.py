"""Reading a results folder for the report: summary.json, the scenario and the Parquet tables, each
one allowed to be missing or damaged (the reason is kept to be shown instead of its section)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPORT_NAME = "report.html"
LEDGER_LOG = "ledger.arrows"  # the ledger as streamed during the run (orchestrator/run/ledger_stream.py)
TABLES = ("blocks", "ledger", "agents", "accuracy", "contributions")
MINED = ("included", "reverted")


# ---- reading a results folder --------------------------------------------------------------------


@dataclass
class Folder:
    """What a results folder holds; tables as columns (wei decimals as Python ints), None when unusable."""

    path: Path
    summary: dict[str, Any] | None = None
    scenario: dict[str, Any] | None = None
    scenario_yaml: str | None = None
    tables: dict[str, dict[str, list[Any]] | None] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # why a file gave nothing

    def rows(self, name: str) -> int:
        cols = self.tables.get(name)
        return len(next(iter(cols.values()), [])) if cols else 0

    def missing(self, name: str) -> str:
        return self.notes.get(name, f"{name}.parquet has no rows")


def _read_json(path: Path) -> tuple[Any, str | None]:
    if not path.exists():
        return None, f"{path.name} is missing"
    try:
        return json.loads(path.read_text()), None
    except (OSError, ValueError) as e:
        return None, f"{path.name} could not be read ({type(e).__name__}: {e})"


def _read_table(path: Path) -> tuple[dict[str, list[Any]] | None, str | None]:
    if not path.exists():
        return None, f"{path.name} is missing"
    try:
        import pyarrow.parquet as pq

        from .ledger_log import table_columns  # pyarrow loads only when a table is read

        table = pq.read_table(path)
    except Exception as e:  # noqa: BLE001 - a damaged file must not cost the rest of the report
        return None, f"{path.name} could not be read ({type(e).__name__}: {e})"
    cols = table_columns(table)
    if table.num_rows == 0:
        return cols, f"{path.name} has no rows"
    return cols, None


def _read_log(path: Path) -> tuple[dict[str, list[Any]] | None, str | None]:
    """A run that never wrote ledger.parquet (killed, or failed before its end) leaves the ledger log
    its ticks streamed: each transaction's last row, up to the last complete batch."""
    try:
        from .ledger_log import read_columns

        cols = read_columns(path)
    except Exception as e:  # noqa: BLE001 - a damaged file must not cost the rest of the report
        return None, f"{path.name} could not be read ({type(e).__name__}: {e})"
    n = len(cols.get("tx_hash", []))
    return cols, (f"{path.name} has no rows" if n == 0 else None)


def read_folder(path: Path) -> Folder:
    f = Folder(Path(path))
    f.summary, note = _read_json(f.path / "summary.json")
    if note:
        f.notes["summary"] = note
    if not isinstance(f.summary, dict):
        f.summary = None
    scenario, note = _read_json(f.path / "scenario.json")
    yaml_path = f.path / "scenario.yaml"
    if yaml_path.exists():
        try:
            f.scenario_yaml = yaml_path.read_text()
        except OSError as e:
            f.notes["scenario.yaml"] = f"scenario.yaml could not be read ({e})"
    if not isinstance(scenario, dict) and f.scenario_yaml:
        try:
            import yaml

            scenario = yaml.safe_load(f.scenario_yaml)
        except Exception as e:  # noqa: BLE001
            f.notes["scenario"] = f"scenario.yaml could not be parsed ({type(e).__name__})"
    f.scenario = scenario if isinstance(scenario, dict) else None
    if f.scenario is None:
        f.notes.setdefault("scenario", "scenario.json and scenario.yaml are missing")
    for name in TABLES:
        cols, note = _read_table(f.path / f"{name}.parquet")
        if name == "ledger" and cols is None and (f.path / LEDGER_LOG).exists():
            cols, note = _read_log(f.path / LEDGER_LOG)
        f.tables[name] = cols
        if note:
            f.notes[name] = note
    return f


def start_block(f: Folder) -> int | None:
    chain = (f.summary or {}).get("chain") or {}
    if isinstance(chain.get("start_block"), int) and chain["start_block"] >= 0:
        return int(chain["start_block"])
    for name, col in (("accuracy", "block"), ("blocks", "number")):
        if f.rows(name):
            return int(min(f.tables[name][col]))  # type: ignore[index]
    return None


def end_block(f: Folder) -> int | None:
    chain = (f.summary or {}).get("chain") or {}
    if isinstance(chain.get("end_block"), int) and chain["end_block"] >= 0:
        return int(chain["end_block"])
    if f.rows("blocks"):
        return int(max(f.tables["blocks"]["number"]))  # type: ignore[index]
    return None


def group_order(f: Folder) -> list[str]:
    order: list[str] = []
    groups = ((f.summary or {}).get("agents") or {}).get("groups")
    if isinstance(groups, Mapping):
        order.extend(groups)
    for g in (f.scenario or {}).get("agents") or []:
        if isinstance(g, Mapping):
            order.append(str(g.get("name") or g.get("policy")))
    for name in ("agents", "ledger"):
        if f.rows(name):
            order.extend(f.tables[name]["group"])  # type: ignore[index]
    return list(dict.fromkeys(order))


