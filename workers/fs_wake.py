"""Wake-ups for the embedded broker: a publisher tells the waiting consumers that a message is in.

Each consuming connection binds a Unix datagram socket in the broker's `wake/` folder
(`<pid>-<n>.sock`, private like the rest of the folder) and, when it finds nothing to take, waits
on it instead of sleeping a polling interval. A publisher, once its message is renamed into the
queue folder, sends the queue's name to every socket there, and removes the sockets of dead
processes. A consumer that acks a message sends itself an empty one, so that a slot freed by an
ack (prefetch 1, acks late) is filled at once, not at the next poll.

A wake-up is a hint: a consumer still looks at the folder at least every fallback interval, so a
lost one (a full socket buffer, a socket removed by hand) costs at most that. Where no socket can
be bound (a platform without Unix sockets; a folder whose path is too long for a socket's
address, 108 bytes on Linux, where /proc/self/fd cannot shorten it), consumers poll as before.
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

#: the longest path used as a socket's address as it is (108 bytes on Linux, 104 on macOS)
MAX_ADDRESS = 100

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
        names = [name for name in os.listdir(folder) if name.endswith(".sock")]
        base, handle = _base(folder)
    except OSError:
        return  # no consumer has bound a socket yet
    payload = queue.encode()
    try:
        for name in names:
            send(os.path.join(folder, name), payload, os.path.join(base, name))
    finally:
        if handle is not None:
            os.close(handle)


def _base(folder: str) -> tuple[str, int | None]:
    """What names `folder` in a socket's address, and the descriptor to close after, if any: a
    long path through an open descriptor of the folder (/proc/self/fd/N, Linux)."""
    if len(os.fsencode(folder)) + 32 <= MAX_ADDRESS or not os.path.isdir("/proc/self/fd"):
        return folder, None
    handle = os.open(folder, os.O_RDONLY)
    return f"/proc/self/fd/{handle}", handle


def send(path: str, payload: bytes, address: str | None = None) -> None:
    """One wake-up to the socket at `path` (reached at `address`, where it is too long to be
    one); a dead process's socket is removed."""
    try:
        _sender().sendto(payload, address or path)
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
        self.name = f"{self.pid}-{next(_numbers)}.sock"
        self.path = os.path.join(folder, self.name)
        self._base: tuple[str, int | None] = (folder, None)
        #: by queue name, how many wake-ups have arrived (a consumer compares them)
        self.generations: dict[str, int] = {}
        self.sock = self._bind(folder)
        self._closer = None  # closes the socket and removes it, at exit too
        if self.sock is not None:
            handle = self._base[1]
            self._closer = weakref.finalize(self, _close, self.sock, self.path, self.pid, handle)

    def _bind(self, folder: str) -> socket.socket | None:
        if not hasattr(socket, "AF_UNIX"):
            return None
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)  # left by a dead process of the same pid
            self._base = _base(folder)  # kept open, for `poke`, where the path is long
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        except OSError:
            return None
        try:
            sock.bind(os.path.join(self._base[0], self.name))
            os.chmod(self.path, 0o600)
            sock.setblocking(False)
        except OSError:
            sock.close()
            if self._base[1] is not None:
                os.close(self._base[1])
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
            send(self.path, b"", os.path.join(self._base[0], self.name))

    def close(self) -> None:
        if self._closer is not None:
            self._closer()
        self.sock = None


def _close(sock: socket.socket, path: str, pid: int, handle: int | None) -> None:
    sock.close()
    if os.getpid() == pid:  # a forked child leaves its parent's socket alone
        with contextlib.suppress(OSError):
            os.unlink(path)
        if handle is not None:
            with contextlib.suppress(OSError):
                os.close(handle)
