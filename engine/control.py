"""Stopping a run from outside: cancellation, a timeout, or the run taken away from its worker.

Phase code cannot be interrupted safely at any point, so the runner checks between phases and
at every `log`, `sleep` and `check` call of the phase context; the document says the run failed
at once, whatever the phase is doing.
"""

from __future__ import annotations

import threading


class RunAborted(Exception):
    """Raised in a phase's thread when its run must stop; the runner writes nothing more."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RunControl:
    """An abort flag shared by the runner, the recorder's watchdog and the phase context."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None

    def abort(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    @property
    def aborted(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise `RunAborted` if the run must stop."""
        if self._event.is_set():
            raise RunAborted(self.reason or "aborted")

    def sleep(self, seconds: float) -> None:
        """Sleep, waking at once (with `RunAborted`) if the run must stop."""
        if self._event.wait(max(0.0, seconds)):
            raise RunAborted(self.reason or "aborted")
