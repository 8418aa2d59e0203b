"""Slowloris against the real API: many connections that send a request line, then one header
line every few seconds and never the end of their headers, beside another client that makes
ordinary calls, each on a fresh connection, as a new visitor would (issue "Every read bounded
from its first byte").

`attack(...)` opens `count` such connections from `sources` loopback addresses (127.0.2.1,
127.0.2.2, …: as many clients; loopback only), and keeps that many open for `seconds`: each
one the server closes is opened again within the next tick (every `interval` seconds: at most
`count` a tick, spread evenly, or with `burst` all at once at the tick), and at each tick every
open one sends its next header line. Meanwhile the other client, from 127.0.0.1, calls
the list (with the read token) and `/healthz` in turn, each with a 5 s timeout. It prints what
the server did with the slow connections (held, answered 408 after the header timeout, 503
refused, closed without an answer), the other client's latency (p50, p99) and the calls it
lost, and the API's resident memory before, at the end and after. Bounded in count (the
process's open-files limit is raised as needed) and in time; nothing is asserted.

    .venv/bin/python bench/hostile.py --slow 3000 --slow-sources 1 --slow-seconds 15
"""

from __future__ import annotations

import http.client
import math
import multiprocessing
import resource
import selectors
import socket
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: the slow connections' first bytes: a request line and one header, never the blank line
HEAD = b"GET /healthz HTTP/1.1\r\nHost: bench\r\n"
#: what each sends at every tick
LINE = b"X-Slow: 1\r\n"
#: how long one pass of the attacker's loop waits for the server's answers and closes
PASS_SECONDS = 0.05
#: how long the other client waits for an answer before it counts the call lost
CALL_TIMEOUT = 5.0


def raise_open_files(needed: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE (which a server it starts inherits) to `needed`
    or the hard limit; returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        soft = want
    return int(soft)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return -1.0


def source(index: int) -> str:
    """The `index`-th attacking address: 127.0.2.1, 127.0.2.2, … (250 per /24)."""
    return f"127.0.{2 + index // 250}.{1 + index % 250}"


@dataclass
class Outcomes:
    """How the slow connections ended."""

    opened: int = 0
    not_connected: int = 0
    answered: dict[str, int] = field(default_factory=dict)  # status line's code -> count
    closed_silently: int = 0
    held_at_end: int = 0
    most_held: int = 0

    def ended(self, first_bytes: bytes) -> None:
        if first_bytes.startswith(b"HTTP/1.1 "):
            code = first_bytes[9:12].decode("latin-1")
            self.answered[code] = self.answered.get(code, 0) + 1
        else:
            self.closed_silently += 1


class Slow:
    """The slow connections, kept at `count` from `sources` addresses until `stop`."""

    def __init__(
        self, port: int, count: int, sources: int, interval: float, burst: bool = False
    ) -> None:
        self.port = port
        self.burst = burst
        self.count = count
        self.sources = max(1, sources)
        self.interval = interval
        self.outcomes = Outcomes()
        self.selector = selectors.DefaultSelector()
        self.stop = threading.Event()
        self.next_source = 0

    def open_one(self) -> None:
        address = source(self.next_source % self.sources)
        self.next_source += 1
        sock = socket.socket()
        try:
            sock.bind((address, 0))
            sock.settimeout(1.0)
            sock.connect(("127.0.0.1", self.port))
            sock.sendall(HEAD)
        except OSError:
            sock.close()
            self.outcomes.not_connected += 1
            return
        sock.setblocking(False)
        self.selector.register(sock, selectors.EVENT_READ)
        self.outcomes.opened += 1

    def drop(self, sock: socket.socket, first_bytes: bytes) -> None:
        self.selector.unregister(sock)
        sock.close()
        self.outcomes.ended(first_bytes)

    def held(self) -> list[socket.socket]:
        return [key.fileobj for key in self.selector.get_map().values()]  # type: ignore[misc]

    def run(self) -> None:
        next_tick = last = time.monotonic()
        credit = 0.0
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= next_tick:
                for sock in self.held():
                    try:
                        sock.send(LINE)
                    except (BlockingIOError, InterruptedError):
                        pass
                    except OSError:
                        self.drop(sock, b"")
                # held through a whole tick: the server has had its time to refuse them
                self.outcomes.most_held = max(self.outcomes.most_held, len(self.held()))
                if self.burst:  # all that were closed, at once, once a tick
                    self.reopen(self.count)
                next_tick = now + self.interval
            if not self.burst:  # spread over the tick: at most `count` a tick, evenly
                credit = min(self.count, credit + (now - last) * self.count / self.interval)
                last = now
                opened = min(math.floor(credit), self.count - len(self.selector.get_map()))
                self.reopen(opened)
                credit -= opened
            self.watch(PASS_SECONDS)
        held = self.held()
        self.outcomes.held_at_end = len(held)
        for sock in held:
            self.selector.unregister(sock)
            sock.close()

    def reopen(self, most: int) -> None:
        """Open again up to `most` of the connections the server closed."""
        for _ in range(min(most, self.count - len(self.selector.get_map()))):
            if self.stop.is_set():
                break
            self.open_one()
            self.watch(0)

    def watch(self, timeout: float) -> None:
        """Take the answers and closes the server sent."""
        for key, _ in self.selector.select(timeout):
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            try:
                data = sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:  # reset
                data = b""
            self.drop(sock, data)


def other_client(port: int, path: str, token: str, until: float) -> tuple[list[float], int, int]:
    """Calls of the list and `/healthz` in turn, each on a fresh connection, until `until`:
    the latencies (ms) of those answered 200, the calls made and the calls lost."""
    latencies: list[float] = []
    made = lost = 0
    while time.monotonic() < until:
        for url, headers in ((path, {"Authorization": f"Bearer {token}"}), ("/healthz", {})):
            made += 1
            began = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=CALL_TIMEOUT)
            try:
                conn.request("GET", url, headers={"Accept-Encoding": "identity", **headers})
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except OSError:
                ok = False
            finally:
                conn.close()
            if ok:
                latencies.append((time.perf_counter() - began) * 1000)
            else:
                lost += 1
            time.sleep(0.02)
    return latencies, made, lost


def p99(values: list[float]) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * 0.99))] if values else -1.0


def _attack_until(
    port: int,
    count: int,
    sources: int,
    interval: float,
    burst: bool,
    stop: Any,
    results: multiprocessing.Queue[Outcomes],
) -> None:
    """The attacker's process: the slow connections until `stop` is set, then their outcomes."""
    slow = Slow(port, count, sources, interval, burst)
    slow.stop = stop
    slow.run()
    results.put(slow.outcomes)


def attack(
    port: int,
    pid: int,
    token: str,
    path: str,
    *,
    count: int,
    sources: int,
    interval: float,
    seconds: float,
    burst: bool = False,
) -> None:
    """Run the attack and print its lines."""
    before = rss_mb(pid)
    alone, _, _ = other_client(port, path, token, time.monotonic() + min(2.0, seconds))
    # the attacker in a process of its own: in this one, it would hold the interpreter's lock
    # from the other client, whose latency would then measure this script, not the API
    context = multiprocessing.get_context("fork")
    stop = context.Event()
    results: multiprocessing.Queue[Outcomes] = context.Queue()
    attacker = context.Process(
        target=_attack_until, args=(port, count, sources, interval, burst, stop, results)
    )
    attacker.start()
    latencies, made, lost = other_client(port, path, token, time.monotonic() + seconds)
    at_end = rss_mb(pid)
    stop.set()
    out = results.get(timeout=60)
    attacker.join(timeout=30)
    time.sleep(1.0)
    after = rss_mb(pid)
    answered = ", ".join(f"{n} answered {code}" for code, n in sorted(out.answered.items()))
    print(
        f"slowloris: {count:,} connections from {sources} address(es), a header line every "
        f"{interval:g} s for {seconds:g} s, each one closed reopened "
        f"{'at the next tick, all at once' if burst else 'within a tick, spread evenly'}\n"
        f"  slow connections: {out.opened:,} opened, "
        f"at most {out.most_held:,} held through a tick; "
        f"{answered or 'none answered'}, {out.closed_silently:,} closed without an answer, "
        f"{out.not_connected:,} not connected, {out.held_at_end:,} still held at the end\n"
        f"  another client, a fresh connection per call (list and /healthz in turn): "
        f"p50 {statistics.median(latencies) if latencies else -1:.2f} ms, "
        f"p99 {p99(latencies):.2f} ms, lost {lost} of {made} "
        f"(alone: p50 {statistics.median(alone):.2f} ms, p99 {p99(alone):.2f} ms)\n"
        f"  API resident memory: {before:.1f} MB before, {at_end:.1f} MB at the end, "
        f"{after:.1f} MB after"
    )
