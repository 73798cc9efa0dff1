"""The error type of every hand-written input (scenario, sweep, CLI argument): a list of issues, each
rendered as one line `file:line:column: field: message`.

Kept apart from the schema so that the YAML loader, the sweep and the CLI share it without importing
the scenario model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# A message longer than this is cut in the middle: a pasted megabyte of text must not come back whole.
MAX_MESSAGE = 400
# Values quoted inside a message are cut to this many characters.
MAX_QUOTED = 60


def quote(value: Any, limit: int = MAX_QUOTED) -> str:
    """repr(value), cut to `limit` characters so a huge value never floods an error message."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 1]}… ({len(text)} characters)"


def cut_message(message: str, limit: int = MAX_MESSAGE) -> str:
    if len(message) <= limit:
        return message
    head = limit * 3 // 4
    tail = limit - head
    return f"{message[:head]} […{len(message) - head - tail} characters cut…] {message[-tail:]}"


@dataclass(frozen=True)
class ScenarioIssue:
    """One problem in an input file. line and column are 1-based."""

    location: str  # e.g. "agents[1].rate"; "" for the file as a whole
    line: int | None
    column: int | None
    message: str

    def format(self, path: str) -> str:
        where = path
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        message = cut_message(" ".join(self.message.split("\n")))
        if self.location:
            return f"{where}: {cut_message(self.location, 120)}: {message}"
        return f"{where}: {message}"


class ScenarioError(Exception):
    """An input could not be loaded; `issues` lists every problem found."""

    def __init__(self, path: str, issues: list[ScenarioIssue]) -> None:
        # Passing both to Exception keeps the error picklable (it may cross process boundaries).
        super().__init__(path, issues)
        self.path = path
        self.issues = sorted(issues, key=lambda i: (i.line or 0, i.column or 0))

    def __str__(self) -> str:
        return "\n".join(issue.format(self.path) for issue in self.issues)


def file_error(source: str, message: str, line: int | None = None, column: int | None = None,
               location: str = "") -> ScenarioError:
    return ScenarioError(source, [ScenarioIssue(location, line, column, message)])
