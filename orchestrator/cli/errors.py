"""How `dcai` ends when something goes wrong.

* A user's mistake (a bad file, argument, dataset, policy, bundle...) is one line on stderr, naming the
  file, line and field where there is one; exit 2.
* Anything else is an internal error: one line with the exception's message and the path of a crash
  log (the redacted traceback) in the results folder; exit 3.
* `--debug` re-raises instead, so the full traceback is shown.
* Ctrl-C outside a run's own handling: exit 130.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from datetime import datetime, timezone
from pathlib import Path

from .. import logs

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 3
EXIT_INTERRUPTED = 130

# Exceptions that mean "the input is wrong", by qualified name: naming them here spares importing every
# module (and its dependencies) just to classify an error.
USER_ERRORS = frozenset({
    "orchestrator.issues.ScenarioError",
    "orchestrator.cli.args.UsageError",
    "orchestrator.datasets.DatasetError",
    "orchestrator.versions.VersionError",
    "orchestrator.replay.BundleError",
    "agents.policies.base.PolicyError",
    "contracts.model_files.ModelFileError",
    "contracts.models.ModelSpecError",
    "contracts.encoders.EncodingError",
    "builtins.FileNotFoundError",
    "builtins.IsADirectoryError",
    "builtins.NotADirectoryError",
    "builtins.PermissionError",
})


def is_user_error(exc: BaseException) -> bool:
    return any(f"{c.__module__}.{c.__qualname__}" in USER_ERRORS for c in type(exc).__mro__)


def user_error_text(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:
        text = f"{exc.filename}: {exc.strerror or exc}"
    else:
        text = str(exc) or type(exc).__name__
    return logs.redact_text(text)


def write_crash_log(exc: BaseException, folder: Path, argv: list[str]) -> Path:
    """The redacted traceback in `folder` (else the temporary directory); returns its path."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    text = logs.redact_text(
        f"dcai {' '.join(argv)}\n{stamp}\n\n" + "".join(traceback.format_exception(exc)))
    for where in (folder, Path(tempfile.gettempdir())):
        try:
            where.mkdir(parents=True, exist_ok=True)
            path = where / f"crash-{stamp}-{os.getpid()}.log"
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    raise exc


def report(exc: BaseException, crash_folder: Path, argv: list[str]) -> int:
    """Print `exc` as the one line the user sees; the exit code."""
    if isinstance(exc, KeyboardInterrupt):
        print("dcai: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if is_user_error(exc):
        print(user_error_text(exc), file=sys.stderr)
        return EXIT_USER_ERROR
    path = write_crash_log(exc, crash_folder, argv)
    message = " ".join(logs.redact_text(str(exc)).split())[:300]
    print(f"dcai: internal error: {type(exc).__name__}: {message}\n"
          f"  the traceback is in {path} (run with --debug to see it here); please report it",
          file=sys.stderr)
    return EXIT_INTERNAL_ERROR
