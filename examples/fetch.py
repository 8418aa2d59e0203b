"""Fetching a URL for a bundled process, only where `PROCEXEC_FETCH_ALLOW` lets it.

Only `http://` and `https://` URLs; the host must be allowed (by name, or as an address or
network entry); the name is resolved once and every address it resolves to is checked
(loopback, private, link-local, multicast, reserved and other non-public addresses need an
address or network entry of their own), then the connection goes to a checked address, never
to a second resolution. Each redirect is checked the same way, at most `MAX_REDIRECTS` of them;
the answer is at most `MAX_BYTES`, and the whole fetch takes at most its time limit (a watchdog
closes the connection then). Everything that goes wrong before an HTTP answer (refused, reset,
timed out, not HTTP) is one message, so that an error never tells an open port from a closed one.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, urljoin, urlsplit

from procexec.engine.errors import excerpt

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: the most bytes an answer may hold (a phase result past the largest checkpoint could not be
#: carried to the next phase anyway: `engine.checkpoints.MAX_CHECKPOINT_BYTES`)
MAX_BYTES = 4 * 1024 * 1024
#: the longest a fetch may take, redirects included (seconds)
MAX_SECONDS = 60.0
#: redirects followed at most
MAX_REDIRECTS = 5
SCHEMES = {"http": 80, "https": 443}
SETTING = "PROCEXEC_FETCH_ALLOW"
#: networks that embed an IPv4 address (6to4, NAT64): never public on their own
_EMBEDDING = (ipaddress.ip_network("2002::/16"), ipaddress.ip_network("64:ff9b::/96"))
_REDIRECTS = {301, 302, 303, 307, 308}
_CHUNK = 64 * 1024


class FetchError(ValueError):
    """A URL that may not be fetched, or whose fetch failed; the message says which and why
    (a `ValueError`: a process's `check` refuses such a URL at trigger time)."""


@dataclass(frozen=True)
class Allowed:
    """What may be fetched: host names (`*` any, `*.example.com` its subdomains) and
    address networks, as `Settings.fetch_allow` holds them."""

    names: frozenset[str]
    networks: tuple[IPNetwork, ...]

    @classmethod
    def of(cls, entries: Iterable[str]) -> Allowed:
        names, networks = set(), []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                names.add(entry.lower())
        return cls(frozenset(names), tuple(networks))

    def name(self, host: str) -> bool:
        host = host.lower()
        if "*" in self.names or host in self.names:
            return True
        return any(
            pattern.startswith("*.") and host.endswith(pattern[1:]) for pattern in self.names
        )

    def address(self, address: IPAddress) -> bool:
        candidates = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
        return any(found in network for found in candidates for network in self.networks)


def literal(host: str) -> IPAddress | None:
    """The address a URL's host spells, however spelt (`127.1`, `0x7f000001`, `2130706433`,
    `::ffff:127.0.0.1`); None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:  # the forms C's inet_aton takes, as the resolver does
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, UnicodeError, ValueError):
        return None


def kind(address: IPAddress) -> str | None:
    """What makes an address non-public ('loopback', 'private', …); None for a public one."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return kind(address.ipv4_mapped)
        if address.scope_id or any(address in network for network in _EMBEDDING):
            return "reserved"
    for name in ("loopback", "link_local", "multicast", "unspecified", "reserved", "private"):
        if getattr(address, f"is_{name}"):
            return name.replace("_", "-")
    return None if address.is_global else "reserved"


def check_url(url: object) -> SplitResult:
    """The parts of an `http(s)://` URL; a `FetchError` for anything else (files, `file://`,
    `ftp://`, credentials in the URL, no host, a bad port)."""
    if not isinstance(url, str) or not url.strip():
        raise FetchError("url: expected an http:// or https:// URL")
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in SCHEMES:
        raise FetchError(
            f"url: only http:// and https:// URLs are fetched, not {excerpt(url, 100)}"
        )
    if parts.username is not None or parts.password is not None:
        raise FetchError("url: credentials in a URL are not supported")
    if not parts.hostname:
        raise FetchError(f"url: no host in {excerpt(url, 100)}")
    try:
        parts.port  # noqa: B018 - raises for a port out of range
    except ValueError:
        raise FetchError(f"url: bad port in {excerpt(url, 100)}") from None
    return parts


def resolve(parts: SplitResult, allowed: Allowed) -> list[IPAddress]:
    """The checked addresses of a URL's host: every one it resolves to, each public or
    allowed; a `FetchError` naming the host otherwise."""
    host = parts.hostname or ""
    spelt = literal(host)
    if spelt is not None:
        if not (allowed.name(host) or allowed.address(spelt)):
            raise FetchError(f"host {host} ({spelt}) is not allowed by {SETTING}")
        found = [spelt]
    else:
        if not allowed.name(host):
            raise FetchError(f"host {host} is not allowed by {SETTING}")
        port = parts.port or SCHEMES[parts.scheme.lower()]
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise FetchError(f"host {host}: cannot resolve the name") from None
        found = []
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if address not in found:
                found.append(address)
    for address in found:
        why = kind(address)
        if why is not None and not allowed.address(address):
            raise FetchError(f"host {host}: {address} is a {why} address, not allowed by {SETTING}")
    if not found:
        raise FetchError(f"host {host}: cannot resolve the name")
    return found


class _Pinned(http.client.HTTPConnection):
    """A connection to `address`, one of the host's checked addresses; HTTPS verifies the
    certificate against the URL's host name."""

    def __init__(self, host: str, port: int, address: IPAddress, timeout: float, tls: bool) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address, self.tls = address, tls
        #: the socket, kept for the watchdog (`sock` is None once a response that closes the
        #: connection holds it)
        self.raw: socket.socket | None = None

    def connect(self) -> None:
        self.raw = socket.create_connection((str(self.address), self.port), self.timeout)
        if self.tls:  # the plain socket is `raw` meanwhile: the watchdog can cut a handshake
            context = ssl.create_default_context()
            self.raw = context.wrap_socket(self.raw, server_hostname=self.host)
        self.sock = self.raw


def fetch(url: object, allowed: Allowed, timeout: float = MAX_SECONDS) -> bytes:
    """The body of `url`'s answer, fetched only as `allowed` lets it (see the module)."""
    deadline = time.monotonic() + min(timeout, MAX_SECONDS)
    current = url
    for hop in range(MAX_REDIRECTS + 1):
        try:
            parts = check_url(current)
            body, location = _get(parts, resolve(parts, allowed), deadline)
        except FetchError as exc:
            if hop:
                raise FetchError(f"redirected to {excerpt(current, 100)}: {exc}") from None
            raise
        if location is None:
            return body
        current = urljoin(parts.geturl(), location)
    raise FetchError(f"too many redirects (more than {MAX_REDIRECTS}) from {excerpt(url, 100)}")


def _get(
    parts: SplitResult, addresses: list[IPAddress], deadline: float
) -> tuple[bytes, str | None]:
    """One request: the body and None, or b"" and a redirect's location."""
    host = parts.hostname or ""
    scheme = parts.scheme.lower()
    port = parts.port or SCHEMES[scheme]
    where = f"{scheme}://{host}"
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    for address in addresses:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        connection = _Pinned(host, port, address, left, tls=scheme == "https")
        # the watchdog: a server that trickles its answer is cut off at the deadline
        watchdog = threading.Timer(left, _cut, (connection,))
        watchdog.daemon = True
        watchdog.start()
        try:
            connection.request(
                "GET", path, headers={"User-Agent": "procexec", "Accept-Encoding": "identity"}
            )
            response = connection.getresponse()
        except (OSError, http.client.HTTPException):
            watchdog.cancel()
            connection.close()
            continue  # the next address; one message for every failure, below
        try:
            return _answer(response, where, deadline)
        finally:
            watchdog.cancel()
            connection.close()
    # one message whatever happened, so that it never tells an open port from a closed one
    raise FetchError(
        f"{where}: no HTTP answer within the time limit (refused, closed, filtered or not HTTP)"
    )


def _answer(
    response: http.client.HTTPResponse, where: str, deadline: float
) -> tuple[bytes, str | None]:
    if response.status in _REDIRECTS:
        location = response.getheader("Location")
        if not location:
            raise FetchError(f"{where}: HTTP {response.status} without a Location")
        return b"", location
    if response.status != 200:
        raise FetchError(f"{where}: HTTP {response.status} {excerpt(response.reason, 60)}")
    length = response.getheader("Content-Length")
    if length is not None and length.isdigit() and int(length) > MAX_BYTES:
        raise FetchError(f"{where}: the answer is larger than {MAX_BYTES} bytes")
    chunks, size = [], 0
    try:
        while chunk := response.read1(_CHUNK):
            size += len(chunk)
            if size > MAX_BYTES:
                raise FetchError(f"{where}: the answer is larger than {MAX_BYTES} bytes")
            chunks.append(chunk)
    except (OSError, http.client.HTTPException):
        raise FetchError(f"{where}: the answer was cut short or outlasted the time limit") from None
    if time.monotonic() >= deadline:  # the watchdog cut it: what came is not the whole answer
        raise FetchError(f"{where}: the answer was cut short or outlasted the time limit")
    return b"".join(chunks), None


def _cut(connection: _Pinned) -> None:
    sock = connection.raw
    if sock is not None:
        with contextlib.suppress(OSError):  # closed meanwhile
            sock.shutdown(socket.SHUT_RDWR)
