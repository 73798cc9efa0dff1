"""Redacted console streams: while `dcai` runs, everything written to stdout and stderr (prints,
progress lines, log lines, Ray's forwarded worker output, tracebacks) passes `logs.redact_text`, so a
password in an RPC URL or a key from the environment never reaches the terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from .. import logs


class RedactingStream:
    """A text stream that redacts whole lines before passing them on. Text is held until a line
    ends (newline or carriage return, the latter for progress lines) so that a secret split over two
    writes is still found."""

    def __init__(self, inner: TextIO) -> None:
        self._inner = inner
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        cut = max(self._pending.rfind("\n"), self._pending.rfind("\r"))
        if cut >= 0:
            ready, self._pending = self._pending[: cut + 1], self._pending[cut + 1:]
            self._inner.write(_redacted(ready))
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._inner.write(_redacted(self._pending))
            self._pending = ""
        self._inner.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...
        return getattr(self._inner, name)


def _redacted(text: str) -> str:
    # A console write must never raise (Ray prints from its own threads); if redaction itself fails,
    # nothing of the line is shown rather than risk showing a secret.
    try:
        return logs.redact_text(text)
    except Exception:  # noqa: BLE001
        return "[a line could not be redacted and is not shown]\n"


@contextmanager
def redacted_console() -> Iterator[None]:
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RedactingStream(out), RedactingStream(err)  # type: ignore[assignment]
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        sys.stdout, sys.stderr = out, err
