"""What a command checks before it starts anything, and how a command that cannot go on stops:
one line on stderr, `procexec: ` and why (passwords and tokens masked), and an exit status of
its own, never a traceback. docs/operations.md lists the statuses.

SIGINT and SIGTERM end standalone and api with 128 + the signal's number (`exit_on_signals`).

A service command (standalone, api, worker, beat, flower) checks its data folder and its
processes first, and standalone its port, so that a mistake stops it before any child is
started, any banner printed or any file written.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import tempfile
from typing import TYPE_CHECKING

from procexec.engine.redact import mask_secrets

if TYPE_CHECKING:
    from pathlib import Path

    from procexec.engine.process import ProcessRegistry
    from procexec.engine.settings import Settings

#: what was asked cannot be done as asked: a setting, an argument, a process module
USAGE = 2
#: this host does not let the command start: its data folder, its port
CANNOT_START = 3
#: stopped by Ctrl-C (SIGINT); SIGTERM ends a service with 128 + 15
INTERRUPTED = 130


class Refused(Exception):
    """A command that stops before it starts: `str()` is the one line, `status` the exit
    status."""

    def __init__(self, message: str, status: int = USAGE) -> None:
        super().__init__(message)
        self.status = status


def fail(message: object, status: int) -> int:
    """Say why on stderr, in one line; the exit status."""
    line = " ".join(mask_secrets(str(message)).split())
    print(f"procexec: {line}", file=sys.stderr, flush=True)
    return status


def data_folder(config: Settings) -> Path:
    """The data folder, made if it is not there, once a file can be written in it."""
    from procexec.engine.private_files import private_folder

    folder = config.data_dir
    try:
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(0, "it is not a folder")
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor, probe = tempfile.mkstemp(prefix=".write-check-", dir=folder)
        os.close(descriptor)
        os.unlink(probe)
    except OSError as exc:
        raise Refused(
            f"PROCEXEC_DATA_DIR: cannot use {folder} as the data folder: {exc.strerror or exc}",
            CANNOT_START,
        ) from None
    return private_folder(folder, files=True)


def processes(config: Settings) -> ProcessRegistry:
    """The processes of the installed plugins and of `PROCEXEC_PROCESSES`, all importable."""
    from procexec.engine.plugins import load_registry

    try:
        return load_registry(config)
    except RuntimeError as exc:
        raise Refused(str(exc)) from None


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to `host:port`, for the API to serve on; refused when the port is taken
    (or the address is none of this host's)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        where = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        raise Refused(f"cannot listen on {where}: {exc.strerror or exc}", CANNOT_START) from None
    return sock


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def exit_on_signals() -> None:
    """SIGINT and SIGTERM end the command with 128 + the signal's number, once uvicorn (which
    raises them again, with the handler it found, after its shutdown) has stopped: no
    KeyboardInterrupt traceback, and standalone's `finally` stops its children."""
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)
