"""Wake-ups for the embedded broker: a publisher tells the waiting consumers that a message is in.

Each consuming connection binds a Unix datagram socket in the broker's `wake/` folder
(`<pid>-<n>.sock`, private like the rest of the folder) and, when it finds nothing to take, waits
on it instead of sleeping a polling interval. A publisher, once its message is renamed into the
queue folder, sends the queue's name to every socket there, and removes the sockets of dead
processes. A consumer that acks a message sends itself an empty one, so that a slot freed by an
ack (prefetch 1, acks late) is filled at once, not at the next poll.

A wake-up is a hint: a consumer still looks at the folder at least every fallback interval, so a
lost one (a full socket buffer, a path too long for a socket's address, a platform without Unix
sockets, where no socket is bound and the consumer polls as before) costs at most that.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import select
import socket
import threading
import time
import weakref

from procexec.engine.pids import pid_alive

#: the folder of the sockets, beside the queue folder
FOLDER = "wake"

_numbers = itertools.count()
_senders: dict[int, socket.socket] = {}  # by process: a forked child makes its own
_senders_lock = threading.Lock()


def _sender() -> socket.socket:
    pid = os.getpid()
    sender = _senders.get(pid)
    if sender is None:
        with _senders_lock:
            sender = _senders.get(pid)
            if sender is None:
                sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sender.setblocking(False)
                _senders.clear()
                _senders[pid] = sender
                atexit.register(sender.close)
    return sender


def notify(folder: str, queue: str) -> None:
    """Wake every consumer waiting on a socket in `folder`: a message for `queue` is in."""
    if not hasattr(socket, "AF_UNIX"):
        return
    try:
        names = os.listdir(folder)
    except OSError:
        return  # no consumer has bound a socket yet
    payload = queue.encode()
    for name in names:
        if name.endswith(".sock"):
            send(os.path.join(folder, name), payload)


def send(path: str, payload: bytes) -> None:
    """One wake-up to the socket at `path`; a dead process's socket is removed."""
    try:
        _sender().sendto(payload, path)
    except (BlockingIOError, InterruptedError):
        pass  # its buffer is full: it has wake-ups to read already
    except (ConnectionRefusedError, FileNotFoundError):
        pid = os.path.basename(path).partition("-")[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                os.unlink(path)
    except OSError:
        pass  # a path too long for an address, or not a socket: that consumer polls


class Waker:
    """The socket one consuming connection waits on, and what arrived on it."""

    def __init__(self, folder: str) -> None:
        self.pid = os.getpid()
        self.path = os.path.join(folder, f"{self.pid}-{next(_numbers)}.sock")
        #: by queue name, how many wake-ups have arrived (a consumer compares them)
        self.generations: dict[str, int] = {}
        self.sock = self._bind(folder)
        self._closer = (
            None
            if self.sock is None
            else weakref.finalize(self, _close, self.sock, self.path, self.pid)
        )  # at exit too

    def _bind(self, folder: str) -> socket.socket | None:
        if not hasattr(socket, "AF_UNIX"):
            return None
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)  # left by a dead process of the same pid
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        except OSError:
            return None
        try:
            sock.bind(self.path)
            os.chmod(self.path, 0o600)
            sock.setblocking(False)
        except OSError:
            sock.close()
            return None
        return sock

    @property
    def active(self) -> bool:
        return self.sock is not None

    def take(self) -> None:
        """Read the wake-ups that have arrived, without waiting."""
        if self.sock is None:
            return
        while True:
            try:
                data = self.sock.recv(1024)
            except OSError:  # nothing more (BlockingIOError), or closed
                return
            if data:
                queue = data.decode(errors="replace")
                self.generations[queue] = self.generations.get(queue, 0) + 1

    def wait(self, timeout: float) -> None:
        """Until a wake-up arrives or `timeout` seconds pass (a plain sleep without a socket)."""
        if self.sock is None:
            time.sleep(timeout)
            return
        with contextlib.suppress(OSError, ValueError):
            select.select([self.sock], [], [], timeout)
        self.take()

    def poke(self) -> None:
        """Wake this consumer itself (from another thread: a slot was freed)."""
        if self.sock is not None:
            send(self.path, b"")

    def close(self) -> None:
        if self._closer is not None:
            self._closer()
        self.sock = None


def _close(sock: socket.socket, path: str, pid: int) -> None:
    sock.close()
    if os.getpid() == pid:  # a forked child leaves its parent's socket alone
        with contextlib.suppress(OSError):
            os.unlink(path)
