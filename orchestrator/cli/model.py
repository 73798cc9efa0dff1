"""`dcai model`: the model as it was at a past block of a finished run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .args import block_arg


def cmd_model(args: argparse.Namespace) -> int:
    from ..versions import evaluate_at, export_at

    run_dir = Path(args.results_dir)
    result = evaluate_at(run_dir, args.at_block)  # VersionError: a user error, reported by cli.errors
    if args.export:
        export_at(run_dir, args.at_block, Path(args.export))
        result["exported"] = args.export
    print(json.dumps(result, indent=2))
    return 0


def add_model_parser(sub: Any) -> None:
    m = sub.add_parser("model", help="the model as it was at a past block of a finished run")
    m.add_argument("results_dir")
    m.add_argument("--at-block", type=block_arg, required=True)
    m.add_argument("--export", default=None, help="write the model at that block to this JSON file")
    m.set_defaults(func=cmd_model)
