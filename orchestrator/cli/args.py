"""Argument parsing for `dcai`: one-line errors (exit 2) and argument types that refuse bad values by
name (`--seed -1`, `--run-id ../x`)."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from ..issues import quote
from ..scenario_types import MAX_SEED, check_name


class UsageError(Exception):
    """A command-line mistake found after parsing (exit 2, one line)."""


class DcaiArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse prints the whole usage block first; one line naming the command and the problem is
        # what a user needs (`dcai run -h` shows the usage).
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} -h')\n")


def seed_arg(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{quote(text)} is not a whole number") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"{value} is outside 0 .. {MAX_SEED} (2**32 - 1, what the random "
                                         "generators take)")
    return value


def run_id_arg(text: str) -> str:
    try:
        return check_name(text, "run id")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def block_arg(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{quote(text)} is not a block number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value}: block numbers start at 0")
    return value


def strip_debug(argv: list[str] | None) -> tuple[list[str], bool]:
    """`--debug` is accepted anywhere on the line (before or after the subcommand)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--" in args:
        head, tail = args[: args.index("--")], args[args.index("--"):]
    else:
        head, tail = args, []
    debug = "--debug" in head
    return [a for a in head if a != "--debug"] + tail, debug


def port_arg(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{quote(text)} is not a whole number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port (1 .. 65535)")
    return value
