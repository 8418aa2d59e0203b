"""`procexec standalone`'s children (the worker and the beat), kept running.

A child that dies is started again after a back-off, with its reason logged. A child that dies
within `GRACE` seconds of starting, twice in a row (a missing module, a broker it cannot speak
to), is not a child that a restart will mend: the supervisor gives up, and standalone ends with
the child's error rather than go on accepting triggers that nothing can run.

Each child's output is passed through to standalone's own, line by line, and its last lines are
kept for the message that names why it died.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from procexec.engine.timeutil import iso_ms

logger = logging.getLogger("procexec.supervisor")

#: a child that dies this many seconds or sooner after it started failed to start
GRACE = 10.0
#: quick deaths in a row after which the supervisor gives up
QUICK_DEATHS = 2
#: the back-off before a restart: BACKOFF seconds, doubled for each death in a row, at most
MAX_BACKOFF = 30.0
BACKOFF = 1.0
#: lines of a child's output kept for the message naming why it died
TAIL_LINES = 20
#: how often the children are looked at
POLL = 0.1


def describe_exit(code: int) -> str:
    """`exited with status 1`, or `killed by SIGKILL`."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


@dataclass
class Child:
    """One supervised command and what happened to it."""

    name: str
    argv: Sequence[str]
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restarts: int = 0
    #: deaths since it last lived past GRACE
    deaths_in_a_row: int = 0
    #: how it last died (`exited with status 1 after 0.8 s`), None before its first death
    last_exit: str | None = None
    last_exit_at: str | None = None
    #: when it is to be started again, after a death (monotonic)
    restart_at: float | None = None
    tail: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=TAIL_LINES)
    )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def state(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "pid": self.proc.pid if self.running and self.proc is not None else None,
            "restarts": self.restarts,
            "lastExit": self.last_exit,
            "lastExitAt": self.last_exit_at,
        }


class Supervisor:
    """Starts `commands` (name: argv), restarts those that die, gives up on those that cannot
    start; `on_give_up(reason)` is called once, from the supervisor's thread, when it does."""

    def __init__(
        self,
        commands: Mapping[str, Sequence[str]],
        *,
        on_give_up: Callable[[str], None],
        env: Mapping[str, str] | None = None,
        output: IO[bytes] | None = None,
    ) -> None:
        self.children = [Child(name, list(argv)) for name, argv in commands.items()]
        self.on_give_up = on_give_up
        self.env = dict(os.environ if env is None else env)
        self.output = output if output is not None else sys.stdout.buffer
        self.gave_up: str | None = None
        self._output_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="procexec-supervisor", daemon=True)

    def start(self) -> None:
        for child in self.children:
            self._spawn(child)
        self._thread.start()

    def status(self) -> dict[str, dict[str, Any]]:
        """Each child's state, for `/readyz`."""
        return {child.name: child.state() for child in self.children}

    def stopping(self) -> None:
        """From now on a child that dies was asked to: no restart (signal-handler safe)."""
        self._stopping.set()

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM every child, wait up to `timeout` seconds in all, then SIGKILL."""
        self._stopping.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(5)
        running = [child.proc for child in self.children if child.running and child.proc]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in running:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def _spawn(self, child: Child) -> None:
        child.tail.clear()
        child.proc = subprocess.Popen(
            child.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        child.started = time.monotonic()
        child.restart_at = None
        threading.Thread(
            target=self._relay,
            args=(child, child.proc.stdout),
            name=f"procexec-{child.name}-output",
            daemon=True,
        ).start()
        logger.info("%s started (pid %d)", child.name, child.proc.pid)

    def _relay(self, child: Child, stream: IO[bytes] | None) -> None:
        """Pass the child's output through, keeping its last lines."""
        if stream is None:
            return
        with stream:
            for line in iter(stream.readline, b""):
                child.tail.append(line.decode(errors="replace").rstrip())
                with self._output_lock, contextlib.suppress(OSError, ValueError):
                    self.output.write(line)
                    self.output.flush()

    def _watch(self) -> None:
        while not self._stopping.wait(POLL):
            for child in self.children:
                if self._stopping.is_set():
                    return
                if child.restart_at is not None:
                    if time.monotonic() >= child.restart_at:
                        child.restarts += 1
                        self._spawn(child)
                    continue
                if child.proc is None or child.proc.poll() is None:
                    continue
                if self._died(child):
                    return

    def _died(self, child: Child) -> bool:
        """Record a death; schedule the restart, or give up (True)."""
        assert child.proc is not None
        code = child.proc.wait()
        lived = time.monotonic() - child.started
        # Its output ends with the pipe: let the relay pass the last lines on first.
        time.sleep(0.2)
        child.last_exit = f"{describe_exit(code)} after {lived:.1f} s"
        child.last_exit_at = iso_ms()
        if self._stopping.is_set():  # asked to stop (Ctrl-C reaches the children too)
            return True
        quick = lived <= GRACE
        child.deaths_in_a_row = child.deaths_in_a_row + 1 if quick else 1
        if quick and child.deaths_in_a_row >= QUICK_DEATHS:
            tail = "\n".join(f"  {line}" for line in child.tail)
            self.gave_up = (
                f"the {child.name} {child.last_exit}, {child.deaths_in_a_row} times in a row "
                f"within {GRACE:g} s of starting: giving up (its last output below)\n{tail}"
            )
            logger.error("%s", self.gave_up)
            self.on_give_up(self.gave_up)
            return True
        backoff = min(MAX_BACKOFF, BACKOFF * 2 ** (child.deaths_in_a_row - 1))
        logger.warning(
            "%s (pid %d) %s; starting it again in %.0f s",
            child.name,
            child.proc.pid,
            child.last_exit,
            backoff,
        )
        child.restart_at = time.monotonic() + backoff
        return False
