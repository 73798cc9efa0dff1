"""A live bar of blocks and transactions (rich), or nothing when disabled or not a terminal."""

from __future__ import annotations

import os
from typing import Any

from .state import RunState


class Progress:
    def __init__(self, enabled: bool, total_blocks: int):
        self.enabled = enabled and os.isatty(2)
        self.total = total_blocks
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as Bar

            self._progress = Bar(
                TextColumn("[bold]blocks"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("{task.fields[info]}"), transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("run", total=self.total, info="")
        return self

    def update(self, done: int, state: RunState, accuracy: float | None, in_flight: int) -> None:
        if self._progress is None:
            return
        acc = f" acc {accuracy:.3f}" if accuracy is not None else ""
        info = f"tx sent {state.sent} included {state.included} reverted {state.reverted} " \
               f"dropped {state.dropped} in flight {in_flight}{acc}"
        self._progress.update(self._task, completed=min(done, self.total), info=info)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)
