"""The parser of `dcai` and its entry point."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import logs
from .args import DcaiArgumentParser, strip_debug
from .console import redacted_console
from .errors import report
from .model import add_model_parser
from .run import add_run_parser
from .validate import add_validate_parsers


def build_parser() -> argparse.ArgumentParser:
    p = DcaiArgumentParser(prog="dcai", description="Stress-test DCAI incentive mechanisms on a real node.")
    p.add_argument("--debug", action="store_true",
                   help="show full tracebacks (anywhere on the line; also for errors in your input)")
    sub = p.add_subparsers(dest="command", required=True)
    add_run_parser(sub)
    add_validate_parsers(sub)
    add_model_parser(sub)
    from ..report import build_report_parser
    from ..replay import build_replay_parser
    from ..sweep import build_sweep_parser
    from ..watch import build_watch_parser

    build_watch_parser(sub)
    build_report_parser(sub)
    build_replay_parser(sub)
    build_sweep_parser(sub)
    from ..attack_search_run import build_attack_search_parser

    build_attack_search_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run `dcai` with `argv` (default: the command line); the exit code: 0 done, 1 a run that did not
    complete, 2 a mistake in the input, 3 an internal error (crash log written), 130 interrupted."""
    args_list, debug = strip_debug(argv)
    logs.set_console_tracebacks(debug)
    with redacted_console():
        try:
            args = build_parser().parse_args(args_list)
        except SystemExit as e:  # --help, or a usage error already printed as one line
            return int(e.code or 0) if isinstance(e.code, int) or e.code is None else 2
        args.debug = debug
        try:
            return int(args.func(args))
        except (Exception, KeyboardInterrupt) as exc:
            if debug:
                raise
            return report(exc, getattr(args, "crash_dir", None) or Path("results"), args_list)


if __name__ == "__main__":
    sys.exit(main())
