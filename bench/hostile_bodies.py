"""Hostile bodies (issue 15): how long each attack on request bodies takes to be answered,
beside an ordinary call, and the API's resident memory before and after.

Starts `procexec api` (SQLite, embedded broker) on a free port in a temporary folder, makes a
run token, then sends each attack over a raw socket: the request's head, then its body in
64 KB pieces until the server answers or closes the connection, or the whole body is sent. It
prints one line per attack: its answer's status, seconds to the answer, the bytes of body the
client got out before it (mostly into the sockets' buffers), and the length of `x-odsl-error`.
Nothing is asserted. A false `Content-Length` is answered by uvicorn itself: the bytes past it
read as a next request, a 400 that closes the connection.

    .venv/bin/python bench/hostile_bodies.py
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE = "/service/process-exec"
CHUNK = 65_536
FORM = "application/x-www-form-urlencoded"
#: the issue's attack: a 400 MB body
BIG = 400 * 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def attack(port: int, head: str, body: bytes, *, chunked: bool = False, total: int = 0) -> str:
    """Send `head`, then `body` (or `total` bytes of `x` in pieces) until answered; the line."""
    pieces: list[bytes]
    if total:
        piece = b"x" * CHUNK
        pieces = [piece] * (total // CHUNK)
    else:
        pieces = [body[i : i + CHUNK] for i in range(0, len(body), CHUNK)]
    if chunked:
        pieces = [b"%x\r\n" % len(p) + p + b"\r\n" for p in pieces] + [b"0\r\n\r\n"]
    began = time.perf_counter()
    sent = 0
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall(head.encode() + b"\r\n")
        sock.setblocking(False)
        for piece in pieces:
            try:
                answer += sock.recv(65536)
                break  # answered (or closed) before the whole body went out
            except BlockingIOError:
                pass
            try:
                sock.sendall(piece)
            except BlockingIOError:
                sock.setblocking(True)
                try:
                    sock.sendall(piece)
                except OSError:
                    break
                sock.setblocking(False)
            except OSError:
                break
            sent += len(piece)
        sock.setblocking(True)
        try:
            while b"\r\n\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except OSError:
            pass
    seconds = time.perf_counter() - began
    status_line, _, rest = answer.partition(b"\r\n")
    error = ""
    for line in rest.split(b"\r\n"):
        if line.lower().startswith(b"x-odsl-error:"):
            error = line.decode("latin-1")[len("x-odsl-error: ") :]
    status = status_line.decode("latin-1")[9:12] or "---"
    return f"{status}  {seconds:8.4f} s  sent {sent / 1e6:8.2f} MB  x-odsl-error {len(error):5}"


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="procexec-hostile-bodies-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROCEXEC_")}
    env["PROCEXEC_DATA_DIR"] = str(work / "data")
    argv = [
        sys.executable,
        "-m",
        "procexec.cli",
        "api",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    log = (work / "api.log").open("wb")
    api = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{BASE}", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline or api.poll() is not None:
                    raise SystemExit(f"the API did not start; see {work / 'api.log'}") from None
                time.sleep(0.1)
        token = subprocess.run(
            [sys.executable, "-m", "procexec.cli", "token", "create", "--user", "bench"],
            env=env, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        host = f"Host: 127.0.0.1:{port}\r\n"
        auth = f"Authorization: Bearer {token}\r\n"
        get = f"GET {BASE}/v1 HTTP/1.1\r\n{host}"
        post = f"POST {BASE}/v1 HTTP/1.1\r\n{host}{auth}Content-Type: application/json\r\n"

        def trigger(payload: object) -> tuple[str, bytes]:
            body = json.dumps(payload).encode()
            return f"{post}Content-Length: {len(body)}\r\n", body

        deep: object = 1
        for _ in range(40):
            deep = [deep]
        rows: list[tuple[str, tuple[str, bytes], dict[str, object]]] = [
            ("ordinary list call", (f"{get}{auth}", b""), {}),
            ("ordinary trigger", trigger({"name": "DEMO"}), {}),
            ("no token, 400 MB form query (Content-Length)",
             (f"{get}Content-Type: {FORM}\r\nContent-Length: {BIG}\r\n", b""), {"total": BIG}),
            ("no token, 400 MB form query (chunked)",
             (f"{get}Content-Type: {FORM}\r\nTransfer-Encoding: chunked\r\n", b""),
             {"total": BIG, "chunked": True}),
            ("no token, false Content-Length 1000, 400 MB sent",
             (f"{get}Content-Type: {FORM}\r\nContent-Length: 1000\r\n", b""), {"total": BIG}),
            ("token, 400 MB trigger (Content-Length)",
             (f"{post}Content-Length: {BIG}\r\n", b""), {"total": BIG}),
            ("token, 400 MB trigger (chunked)",
             (f"{post}Transfer-Encoding: chunked\r\n", b""), {"total": BIG, "chunked": True}),
            ("token, 400 MB form query (chunked)",
             (f"{get}{auth}Content-Type: {FORM}\r\nTransfer-Encoding: chunked\r\n", b""),
             {"total": BIG, "chunked": True}),
            ("token, 900 KB process name", trigger({"name": "N" * 900_000}), {}),
            ("token, 900 KB _reason", trigger({"name": "DEMO", "_reason": "r" * 900_000}), {}),
            ("token, 900 KB parameters",
             trigger({"name": "DEMO", "body": {"x": "y" * 900_000}}), {}),
            ("token, parameters nested 41 deep",
             trigger({"name": "DEMO", "body": {"a": deep}}), {}),
            ("token, 60 KB unknown process in the path",
             (f"GET /service/process/v1/{'P' * 60_000} HTTP/1.1\r\n{host}{auth}", b""), {}),
        ]  # fmt: skip
        before = rss_kb(api.pid)
        print(f"API pid {api.pid}, resident {before / 1024:.1f} MB before")
        for label, (head, body), options in rows:
            line = attack(port, head, body, **options)  # type: ignore[arg-type]
            print(f"{label:50} {line}")
        after = rss_kb(api.pid)
        print(f"resident {after / 1024:.1f} MB after ({(after - before) / 1024:+.1f} MB)")
    finally:
        api.terminate()
        api.wait(20)
        log.close()


if __name__ == "__main__":
    main()
