"""The deadline of one API read, over all of its work: parsing and checking the query, the store's
statements, and what is done in Python with the rows after (dedup, sort, serialisation).

The API opens it (`reading`) when a list call arrives, with `Settings.read_timeout`; the store
bounds its statements by what is left of it (`remaining`), and every loop of Python work over
rows or over a query's parts looks at it now and then (`check`, `checked`), which raises
`QueryTimeout` once past it: a 503, as a statement the store stopped. The engine's own calls
(workers, the scheduler) run outside any deadline, and `check` then costs one lookup.

A `ContextVar`: a call tried on the event loop and then handed to a worker thread keeps it
(Starlette copies the context into the thread).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

from procexec.engine.errors import QueryTimeout

T = TypeVar("T")

#: how many items a loop takes between two looks at the clock (`checked`)
EVERY = 256


@dataclass(frozen=True)
class Deadline:
    #: when the read must have ended, on `time.monotonic`'s clock
    at: float
    #: the limit it was opened with, for the 503's message
    seconds: float

    def left(self) -> float:
        return self.at - time.monotonic()


_current: ContextVar[Deadline | None] = ContextVar("procexec_read_deadline", default=None)


@contextlib.contextmanager
def reading(seconds: float | None, started: float | None = None) -> Iterator[Deadline | None]:
    """The block's work bounded by `seconds` from `started` (`time.monotonic()`; now when
    None). None, zero or less, or infinity: no limit. Nested, the outer deadline holds."""
    outer = _current.get()
    if outer is not None or seconds is None or not 0 < seconds < float("inf"):
        yield outer
        return
    deadline = Deadline((time.monotonic() if started is None else started) + seconds, seconds)
    token = _current.set(deadline)
    try:
        yield deadline
    finally:
        _current.reset(token)


def current() -> Deadline | None:
    return _current.get()


def remaining() -> float | None:
    """The seconds left of the current read (at least a millisecond, so that a store still
    opens its statement and stops it at once); None outside a read."""
    deadline = _current.get()
    return None if deadline is None else max(0.001, deadline.left())


def check() -> None:
    """`QueryTimeout` once the current read is past its deadline; nothing outside a read."""
    deadline = _current.get()
    if deadline is not None and deadline.left() <= 0:
        raise QueryTimeout(deadline.seconds)


def checked(items: Iterable[T], every: int = EVERY) -> Iterator[T]:
    """`items`, the current read's deadline looked at every `every` of them."""
    deadline = _current.get()
    if deadline is None:
        yield from items
        return
    for count, item in enumerate(items):
        if count % every == 0 and deadline.left() <= 0:
            raise QueryTimeout(deadline.seconds)
        yield item
