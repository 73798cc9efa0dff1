"""The `dcai` command. One module per subcommand (run, validate/schema, model); report, watch,
replay and sweep add their own parsers from their modules. `main` turns every failure into one line
and an exit code (orchestrator/cli/errors.py)."""

from .app import build_parser, main

__all__ = ["build_parser", "main"]
