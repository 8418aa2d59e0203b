"""A load generator for the benchmarks: keep-alive HTTP/1.1 over asyncio streams, no library.

`load(port, requests, connections, seconds)` opens `connections` connections to 127.0.0.1 and
on each sends the prepared requests one after the other (each connection starting at its own
offset in the list, cycling through it) until `seconds` have passed, reading each answer
whole (by its Content-Length) before the next request. It returns the answers' count, the
seconds from the first connection's start to the last one's end, each latency (ms), the
statuses, and the CPU seconds the client used. uvloop runs the event loop when installed.

With `processes` above 1, the connections are shared among that many processes (this module
run as a script, its arguments as JSON on its standard input), and their figures merged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any


def request(method: str, path: str, port: int, headers: dict[str, str], body: bytes = b"") -> bytes:
    """One HTTP/1.1 request, ready to send."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def _connection(
    port: int, requests: list[bytes], offset: int, deadline: float, out: dict[str, Any]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    latencies, statuses = out["latencies"], out["statuses"]
    clock = time.perf_counter
    index = offset
    try:
        while clock() < deadline:
            message = requests[index % len(requests)]
            index += 1
            began = clock()
            writer.write(message)
            head = await reader.readuntil(b"\r\n\r\n")
            at = head.lower().find(b"\r\ncontent-length:")
            if at < 0:
                raise RuntimeError(f"an answer without Content-Length: {head[:200]!r}")
            await reader.readexactly(int(head[at + 17 : head.index(b"\r\n", at + 2)]))
            latencies.append((clock() - began) * 1000)
            statuses[int(head[9:12])] += 1
    finally:
        writer.close()


async def _load(
    port: int, requests: list[bytes], connections: int, seconds: float
) -> dict[str, Any]:
    out: dict[str, Any] = {"latencies": [], "statuses": Counter()}
    cpu = time.process_time()
    began = time.time()
    deadline = time.perf_counter() + seconds
    step = max(1, len(requests) // connections)
    await asyncio.gather(
        *(_connection(port, requests, n * step, deadline, out) for n in range(connections))
    )
    out.update(
        count=len(out["latencies"]),
        began=began,
        ended=time.time(),
        cpu=time.process_time() - cpu,
        statuses=dict(out["statuses"]),
    )
    return out


def _run(port: int, requests: list[bytes], connections: int, seconds: float) -> dict[str, Any]:
    factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(_load(port, requests, connections, seconds))


def load(
    port: int, requests: list[bytes], connections: int, seconds: float, processes: int = 1
) -> dict[str, Any]:
    """The figures of one period of load (see the module's docstring)."""
    if processes <= 1:
        out = _run(port, requests, connections, seconds)
    else:
        spec = {
            "port": port,
            "requests": [r.decode("latin-1") for r in requests],
            "seconds": seconds,
        }
        children = []
        for n in range(processes):
            share = connections // processes + (n < connections % processes)
            child = subprocess.Popen(
                [sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
            children.append((child, json.dumps({**spec, "connections": share}).encode()))
        try:
            parts = [json.loads(child.communicate(text)[0]) for child, text in children]
        finally:
            for child, _ in children:
                if child.poll() is None:
                    child.kill()
                child.wait()
        statuses: Counter[int] = Counter()
        for part in parts:
            statuses.update({int(k): v for k, v in part["statuses"].items()})
        out = {
            "latencies": [x for part in parts for x in part["latencies"]],
            "count": sum(part["count"] for part in parts),
            "began": min(part["began"] for part in parts),
            "ended": max(part["ended"] for part in parts),
            "cpu": sum(part["cpu"] for part in parts),
            "statuses": dict(statuses),
        }
    out["elapsed"] = out["ended"] - out["began"]
    return out


if __name__ == "__main__":
    given = json.load(sys.stdin)
    result = _run(
        given["port"],
        [r.encode("latin-1") for r in given["requests"]],
        given["connections"],
        given["seconds"],
    )
    json.dump(result, sys.stdout)
