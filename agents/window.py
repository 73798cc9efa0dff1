"""A list that forgets: indexed from the start of the run, its oldest items can be dropped.

A shard holds two lists that grow with every transaction: the public contributions (the trainer's
AddData logs) and each agent's own contributions (whose ids are list positions). Policies walk the
first with cursors (`obs.public[self._seen:]`) and look the second up by id, so both keep their
indices for the whole run: `len()` counts every item ever appended, an index or slice is absolute,
and only the items below `start` are gone. Iteration yields what is kept, in order.

Who may forget what is the shard's decision (agents/shard_memory.py): only items no agent can look
at again, and deep enough that no reorg or node restart can bring them back.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")


class ForgottenError(IndexError):
    """An index below the window's start: that item was settled and dropped."""


_GONE: Any = object()  # a forgotten item inside the window (own contributions settle out of order)


class Window(Sequence[T], Generic[T]):
    __slots__ = ("_items", "_start", "_holes")

    def __init__(self, items: Iterable[T] = (), start: int = 0) -> None:
        self._items: list[T] = list(items)
        self._start = start
        self._holes = 0

    @property
    def start(self) -> int:
        """Index of the oldest item kept (every lower index was forgotten)."""
        return self._start

    @property
    def kept(self) -> int:
        """How many items are held."""
        return len(self._items) - self._holes

    def __len__(self) -> int:
        return self._start + len(self._items)

    @overload
    def __getitem__(self, i: int) -> T: ...

    @overload
    def __getitem__(self, i: slice) -> list[T]: ...

    def __getitem__(self, i: int | slice) -> T | list[T]:
        if isinstance(i, slice):
            lo, hi, step = i.indices(len(self))
            if step != 1:
                return [x for j in range(lo, hi, step) if j >= self._start
                        and (x := self._items[j - self._start]) is not _GONE]
            # A slice reaching below the start gives what is kept: a cursor older than the window
            # has nothing left to read there.
            part = self._items[max(lo - self._start, 0):max(hi - self._start, 0)]
            return part if not self._holes else [x for x in part if x is not _GONE]
        j = i + len(self) if i < 0 else i
        if j < self._start:
            if j < 0:
                raise IndexError(f"index {i} out of range for {len(self)} items")
            raise ForgottenError(f"item {i} was forgotten (items below {self._start} are settled and dropped)")
        x = self._items[j - self._start]
        if x is _GONE:
            raise ForgottenError(f"item {i} was forgotten (settled and dropped)")
        return x

    def get(self, i: int) -> T | None:
        """Item `i` (an absolute index, >= 0), or None if it was forgotten or is not there yet."""
        j = i - self._start
        if j < 0 or j >= len(self._items):
            return None
        x = self._items[j]
        return None if x is _GONE else x

    def enumerate_from(self, index: int) -> Iterator[tuple[int, T]]:
        """(absolute index, item) of the kept items from `index` on (the start, if below it), without
        copying the list: a cursor's walk."""
        first = max(index, self._start)
        pairs = zip(itertools.count(first), itertools.islice(self._items, first - self._start, None))
        return pairs if not self._holes else ((i, x) for i, x in pairs if x is not _GONE)

    def __iter__(self) -> Iterator[T]:
        if not self._holes:
            return iter(self._items)
        return (x for x in self._items if x is not _GONE)

    def __reversed__(self) -> Iterator[T]:
        return (x for x in reversed(self._items) if x is not _GONE)

    def __bool__(self) -> bool:
        return len(self) > 0

    def __repr__(self) -> str:
        return f"Window(start={self._start}, kept={len(self._items)})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Window):
            return self._start == other._start and list(self) == list(other) and len(self) == len(other)
        if isinstance(other, list):
            return self._start == 0 and not self._holes and self._items == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable

    def append(self, item: T) -> None:
        self._items.append(item)

    def forget_before(self, index: int) -> int:
        """Drop every item below `index` (clipped to what is held); returns how many went."""
        n = min(index, len(self)) - self._start
        if n <= 0:
            return 0
        if self._holes:
            self._holes -= sum(1 for x in self._items[:n] if x is _GONE)
        del self._items[:n]
        self._start += n
        return n

    def forget(self, index: int) -> None:
        """Drop one item, wherever it is; the window's start moves past a settled prefix."""
        j = index - self._start
        if j < 0 or j >= len(self._items) or self._items[j] is _GONE:
            return
        self._items[j] = _GONE
        self._holes += 1
        if self._items[0] is _GONE:
            k = 0
            while k < len(self._items) and self._items[k] is _GONE:
                k += 1
            # Trimmed in batches: deleting a list's head costs its length.
            if k >= 64 or k == len(self._items) or k * 4 >= len(self._items):
                del self._items[:k]
                self._start += k
                self._holes -= k

    def truncate(self, length: int) -> None:
        """Drop every item at `length` and above (a reorg replaced the blocks they came from)."""
        if length < self._start:
            raise ForgottenError(f"cannot cut to {length}: items below {self._start} were already forgotten")
        cut = self._items[length - self._start:]
        if self._holes:
            self._holes -= sum(1 for x in cut if x is _GONE)
        del self._items[length - self._start:]

    def __getstate__(self) -> tuple[list[T | None], int]:
        return [None if x is _GONE else x for x in self._items], self._start

    def __setstate__(self, state: tuple[list[T | None], int]) -> None:
        items, self._start = state
        self._items = [_GONE if x is None else x for x in items]
        self._holes = sum(1 for x in self._items if x is _GONE)
