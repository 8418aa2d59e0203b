"""ECB_FX fetches http(s) URLs only, from the hosts `PROCEXEC_FETCH_ALLOW` allows: never a
file, `file://` or `ftp://` (a 400 at trigger time), never a loopback, private or otherwise
non-public address unless an address entry allows it, however spelt (`127.1`, `0x7f000001`,
`2130706433`, `[::1]`, `[::ffff:127.0.0.1]`, a name that resolves there, a redirect); its
errors never tell an open port from a closed one, and its answers are bounded in size and time.

Every refused run is real: triggered, run by the runner on a real SQLite file, failed in
EXTRACT with a message naming why, and nothing fetched is stored (no checkpoint, and the
served bytes are nowhere in the store's files).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from procexec.engine.errors import BadRequest
from procexec.engine.process import ProcessRegistry
from procexec.engine.query import parse_query
from procexec.engine.runner import PhaseRunner
from procexec.engine.settings import Settings
from procexec.engine.store.base import ExecutionStore
from procexec.engine.store.sqlite import SQLiteStore
from procexec.engine.trigger_service import TriggerService
from procexec.examples import fetch as fetch_module
from procexec.examples.fetch import Allowed, FetchError, fetch
from tests.http_files import FileServer

#: what the served files hold: a run that fetched them would have it in its checkpoint
MARKER = "SECRET-MARKER-4f1c"
NOT_RATES = f"<?xml version='1.0'?><rates><secret>{MARKER}</secret></rates>"
NOT_ALLOWED = "not allowed by PROCEXEC_FETCH_ALLOW"


@pytest.fixture
def triggers(sqlite_store: ExecutionStore, registry: ProcessRegistry) -> TriggerService:
    return TriggerService(sqlite_store, registry, lambda *_: None)


@pytest.fixture
def runner(sqlite_store: ExecutionStore, registry: ProcessRegistry) -> PhaseRunner:
    return PhaseRunner(sqlite_store, registry, flush_interval=0.05)


@pytest.fixture
def run(
    triggers: TriggerService, runner: PhaseRunner, sqlite_store: ExecutionStore
) -> Callable[..., dict[str, Any]]:
    """Trigger ECB_FX with `body`, run it; its final document."""

    def run_ecb_fx(**body: Any) -> dict[str, Any]:
        doc = triggers.trigger("ECB_FX", run_as="alice", environment="production", body=body)
        runner.run(doc["_id"])
        final = sqlite_store.get(doc["_id"])
        assert final is not None
        return final

    return run_ecb_fx


def refused_in_extract(doc: dict[str, Any], store: ExecutionStore, why: str) -> str:
    """The run failed in EXTRACT with a message holding `why`, nothing fetched stored; the
    message."""
    assert doc["status"] == "failed", doc
    assert [(p["name"], p["status"]) for p in doc["phases"]] == [("EXTRACT", "failed")]
    message: str = doc["message"]
    assert message.startswith("Failed in EXTRACT: FetchError: "), message
    assert why in message, message
    assert store.load_checkpoint(doc["_id"]) is None
    assert isinstance(store, SQLiteStore)
    for file in Path(store.path).parent.glob("procexec.db*"):
        assert MARKER.encode() not in file.read_bytes(), file
    return message


def allow(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("PROCEXEC_FETCH_ALLOW", value)


# --- what may be fetched ---------------------------------------------------------------------


def test_an_allowed_server_is_fetched_and_its_bytes_checkpointed(
    run: Callable[..., dict[str, Any]], sqlite_store: ExecutionStore, file_server: FileServer
) -> None:
    """The control of the refusals below: the same file from an allowed host is fetched (it
    fails in TRANSFORM, and its bytes are in the run's checkpoint)."""
    doc = run(url=file_server.serve("secret.xml", NOT_RATES))
    assert doc["message"].startswith("Failed in TRANSFORM: ValueError: no <Cube"), doc
    checkpoint = sqlite_store.load_checkpoint(doc["_id"])
    assert checkpoint is not None and MARKER.encode() in checkpoint[1]


@pytest.mark.parametrize(
    "url",
    ["/etc/passwd", "etc/passwd", "file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://x/"],
)
def test_files_and_other_schemes_are_refused_at_trigger_time(
    triggers: TriggerService, sqlite_store: ExecutionStore, url: str
) -> None:
    with pytest.raises(BadRequest, match=r"^body.url: Value error, only http:// and https:// URLs"):
        triggers.trigger("ECB_FX", run_as="alice", environment="production", body={"url": url})
    assert sqlite_store.list(parse_query({}))[0] == []  # nothing recorded


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"url": 5}, "url: Input should be a valid string"),
        ({"url": ""}, "url: Value error, expected an http:// or https:// URL"),
        ({"url": "http://user:pw@example.com/"}, "url: Value error, credentials in a URL"),
        ({"url": "http:///x"}, "url: Value error, no host"),
        ({"url": "http://example.com:99999/"}, "url: Value error, bad port"),
        ({"timeout": 1e9}, "timeout: Input should be less than or equal to 60"),
        ({"timeout": 0}, "timeout: Input should be greater than 0"),
        ({"timeout": "soon"}, "timeout: Input should be a valid number"),
        ({"date": "2021-07-02"}, "date: unknown parameter; ECB_FX takes timeout, url"),
    ],
)
def test_bad_parameters_are_a_bad_request(
    triggers: TriggerService, body: dict[str, Any], why: str
) -> None:
    with pytest.raises(BadRequest, match=f"^body.{why}"):
        triggers.trigger("ECB_FX", run_as="alice", environment="production", body=body)


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("localhost", None),  # a name that resolves to loopback
        ("10.1.2.3", "10.1.2.3"),
        ("169.254.169.254", "169.254.169.254"),
        ("0.0.0.0", "0.0.0.0"),
        ("224.0.0.1", "224.0.0.1"),
        ("[fe80::1]", "fe80::1"),
        ("[2002:7f00:1::]", "2002:7f00:1::"),
    ],
)
def test_non_public_addresses_are_refused_however_spelt(
    run: Callable[..., dict[str, Any]],
    sqlite_store: ExecutionStore,
    file_server: FileServer,
    monkeypatch: pytest.MonkeyPatch,
    host: str,
    address: str | None,
) -> None:
    """With every name allowed (`*`), a loopback or private address is still refused: by what
    it is, after resolution, before any connection."""
    allow(monkeypatch, "*")
    file_server.serve("secret.xml", NOT_RATES)
    message = refused_in_extract(
        run(url=f"http://{host}:{file_server.port}/secret.xml"), sqlite_store, NOT_ALLOWED
    )
    if address is not None:
        assert f"{address} is a " in message, message


def test_a_host_not_in_the_setting_is_refused_by_name(
    run: Callable[..., dict[str, Any]], sqlite_store: ExecutionStore, file_server: FileServer
) -> None:
    """`file_server` allows 127.0.0.1 alone: `localhost` (the same address) is another host."""
    url = file_server.serve("secret.xml", NOT_RATES)
    message = refused_in_extract(
        run(url=url.replace("127.0.0.1", "localhost")), sqlite_store, NOT_ALLOWED
    )
    assert "host localhost is not allowed" in message


def test_the_default_setting_allows_the_ecb_alone(
    run: Callable[..., dict[str, Any]], sqlite_store: ExecutionStore
) -> None:
    assert Settings().fetch_allow == ("www.ecb.europa.eu",)
    message = refused_in_extract(run(url="https://example.com/x.xml"), sqlite_store, NOT_ALLOWED)
    assert "host example.com is not allowed" in message


@pytest.mark.parametrize(
    "target",
    [
        "http://localhost:{port}/secret.xml",
        "http://127.0.0.2:{port}/secret.xml",
        "http://[::1]:{port}/secret.xml",
        "http://0x7f000002:{port}/secret.xml",  # 127.0.0.2, spelt otherwise
        "file:///etc/passwd",
        "ftp://127.0.0.1/secret.xml",
    ],
)
def test_a_redirect_is_checked_like_the_first_url(
    run: Callable[..., dict[str, Any]],
    sqlite_store: ExecutionStore,
    file_server: FileServer,
    target: str,
) -> None:
    """127.0.0.1 is allowed; a redirect from it to any other spelling of the machine, or to a
    file, is refused, and neither the redirect's body nor the target's bytes are stored."""
    file_server.serve("secret.xml", NOT_RATES)
    file_server.redirects["/start.xml"] = target.format(port=file_server.port)
    message = refused_in_extract(
        run(url=f"{file_server.url}/start.xml"), sqlite_store, "redirected to "
    )
    assert NOT_ALLOWED in message or "only http:// and https://" in message, message


def test_a_redirect_within_the_allowed_hosts_is_followed(
    run: Callable[..., dict[str, Any]], sqlite_store: ExecutionStore, file_server: FileServer
) -> None:
    file_server.serve("secret.xml", NOT_RATES)
    file_server.redirects["/start.xml"] = "/secret.xml"  # relative: the same host
    doc = run(url=f"{file_server.url}/start.xml")
    assert doc["message"].startswith("Failed in TRANSFORM: ValueError: no <Cube"), doc


def test_redirects_are_limited(
    run: Callable[..., dict[str, Any]], sqlite_store: ExecutionStore, file_server: FileServer
) -> None:
    for hop in range(10):
        file_server.redirects[f"/{hop}"] = f"/{hop + 1}"
    refused_in_extract(run(url=f"{file_server.url}/0"), sqlite_store, "too many redirects")


# --- open and closed ports look alike --------------------------------------------------------


@pytest.fixture
def ports() -> Iterator[dict[str, int]]:
    """An open port that speaks no HTTP, an open port that never answers, a closed port."""
    chatty = socket.create_server(("127.0.0.1", 0))
    silent = socket.create_server(("127.0.0.1", 0))
    closed = socket.create_server(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    stop = threading.Event()

    def serve_garbage() -> None:
        chatty.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = chatty.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

    thread = threading.Thread(target=serve_garbage, daemon=True)
    thread.start()
    yield {
        "open": chatty.getsockname()[1],
        "silent": silent.getsockname()[1],
        "closed": closed_port,
    }
    stop.set()
    thread.join(5)
    chatty.close()
    silent.close()


@pytest.mark.parametrize("setting", ["*", "127.0.0.1"])
def test_open_and_closed_ports_answer_the_same_message(
    run: Callable[..., dict[str, Any]],
    sqlite_store: ExecutionStore,
    monkeypatch: pytest.MonkeyPatch,
    ports: dict[str, int],
    setting: str,
) -> None:
    """Refused (`*`: loopback is not allowed) or allowed (`127.0.0.1`), an open port that
    speaks something else, one that never answers and a closed one fail alike."""
    allow(monkeypatch, setting)
    why = NOT_ALLOWED if setting == "*" else "no HTTP answer"
    messages = {
        kind: refused_in_extract(
            run(url=f"http://127.0.0.1:{port}/", timeout=1), sqlite_store, why
        ).replace(str(port), "PORT")
        for kind, port in ports.items()
    }
    assert len(set(messages.values())) == 1, messages
    assert "PORT" not in messages["open"]


# --- bounded in size and time -----------------------------------------------------------------


def raw_server(answer: Callable[[socket.socket], None]) -> tuple[int, Callable[[], None]]:
    """A TCP server on 127.0.0.1 that answers each connection with `answer`; its port and
    how to stop it."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn, contextlib.suppress(OSError):  # the client hung up
                answer(conn)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()

    def close() -> None:
        stop.set()
        thread.join(30)
        server.close()

    return server.getsockname()[1], close


def trickle(conn: socket.socket, head: bytes) -> None:
    conn.sendall(head)
    for _ in range(600):  # a byte every 0.1 s, for a minute
        conn.sendall(b"x")
        time.sleep(0.1)


LOOPBACK = Allowed.of(["127.0.0.1"])


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\n",  # headers that never end
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n",  # a body that never ends
        b"HTTP/1.0 200 OK\r\n\r\n",  # no length: until the connection closes
    ],
)
def test_a_trickling_server_is_cut_off_at_the_time_limit(head: bytes) -> None:
    port, close = raw_server(lambda conn: trickle(conn, head))
    try:
        began = time.monotonic()
        with pytest.raises(FetchError, match="time limit"):
            fetch(f"http://127.0.0.1:{port}/", LOOPBACK, timeout=1)
        assert time.monotonic() - began < 30  # a hang detector, not a timing
    finally:
        close()


def test_a_large_answer_is_refused(
    file_server: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fetch_module, "MAX_BYTES", 1000)
    small = file_server.serve("small.xml", "x" * 1000)
    assert fetch(small, LOOPBACK) == b"x" * 1000
    with pytest.raises(FetchError, match="larger than 1000 bytes"):  # by its Content-Length
        fetch(file_server.serve("large.xml", "x" * 1001), LOOPBACK)
    port, close = raw_server(lambda conn: conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * 5000))
    try:  # no Content-Length: counted as it comes
        with pytest.raises(FetchError, match="larger than 1000 bytes"):
            fetch(f"http://127.0.0.1:{port}/", LOOPBACK)
    finally:
        close()


def test_the_connection_goes_to_the_checked_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """No second resolution: the name is resolved once, and a second answer (DNS rebinding)
    is never asked for."""
    calls: list[str] = []
    real = socket.getaddrinfo

    def rebinding(host: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(host)
        if len(calls) > 1:
            return real("127.0.0.1", *args, **kwargs)
        return real("93.184.215.14", *args, **kwargs)  # a public address, unreachable here

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    connected: list[Any] = []

    def connect(address: Any, *args: Any, **kwargs: Any) -> Any:
        connected.append(address)
        raise ConnectionRefusedError

    monkeypatch.setattr(socket, "create_connection", connect)
    with pytest.raises(FetchError, match="no HTTP answer"):
        fetch("http://rebind.example/", Allowed.of(["rebind.example"]), timeout=2)
    assert calls == ["rebind.example"]
    assert connected == [("93.184.215.14", 80)]


def test_an_address_entry_allows_a_private_address() -> None:
    allowed = Allowed.of(["*", "10.0.0.0/8"])
    assert allowed.address(ipaddress.ip_address("10.1.2.3"))
    assert not allowed.address(ipaddress.ip_address("192.168.1.1"))
    assert Allowed.of(["*.ecb.europa.eu"]).name("www.ecb.europa.eu")
    assert not Allowed.of(["*.ecb.europa.eu"]).name("ecb.europa.eu.evil.com")
    assert not Allowed.of(["www.ecb.europa.eu"]).name("www.ecb.europa.eu.evil.com")
