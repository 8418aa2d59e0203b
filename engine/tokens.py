"""API tokens: opaque, random, stored only as a SHA-256 hash, each bound to a user and a scope,
with an optional expiry and optional limits to environments and processes; listed (never their
text) and revoked by id, the start of their hash."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import secrets
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from procexec.engine.domain import Scope
from procexec.engine.query import And, Condition, Query
from procexec.engine.store.base import ExecutionStore, TokenRecord
from procexec.engine.timeutil import iso_ms, now, parse_iso

PREFIX = "pe_"
_USER = re.compile(r"^[A-Za-z0-9_.@+-]{1,128}\Z")
#: an environment's name, as the `x-odsl-environment` header takes it
_ENVIRONMENT = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
#: a process's name, as definitions spell them
_PROCESS = re.compile(r"^[A-Za-z0-9_.-]{1,128}\Z")
#: `--expires` as a length of time: a number and a unit
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*\Z")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
#: how long an API process takes a token it verified on trust: a revoked or expired token is
#: refused by every API process at most this many seconds after its revocation or expiry
CACHE_SECONDS = 5.0
#: how much `scope` a token's scope covers: each covers those below it
_RANK = {Scope.READ.value: 1, Scope.RUN.value: 2, Scope.ADMIN.value: 3}


class TokenError(ValueError):
    """A token cannot be made or found as asked; the message says why."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_expires(raw: str, moment: float | None = None) -> str:
    """`--expires`: a length of time from now (`30d`, `12h`, `90m`, `2w`, `45s`) or an ISO date
    or datetime (`2030-01-31`, `2030-01-31T12:00Z`; without a zone, UTC), as ISO UTC. It must
    lie in the future."""
    start = now() if moment is None else _utc(moment)
    found = _DURATION.match(raw)
    if found:
        try:
            until = start + timedelta(seconds=float(found[1]) * _UNITS[found[2]])
        except OverflowError:
            raise TokenError(f"--expires: '{raw}' is too far away") from None
    else:
        try:
            until = parse_iso(raw.strip())
        except ValueError:
            raise TokenError(
                f"--expires: '{raw}' is neither a length of time (30d, 12h, 90m, 2w) nor an "
                "ISO date or datetime (2030-01-31, 2030-01-31T12:00Z)"
            ) from None
    if until <= start:
        raise TokenError(f"--expires: '{raw}' is not in the future")
    return iso_ms(until)


def _utc(moment: float) -> datetime:
    return datetime.fromtimestamp(moment, UTC)


def _names(values: Iterable[str], pattern: re.Pattern[str], what: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(value.strip() for value in values))
    for name in names:
        if not pattern.match(name):
            raise TokenError(f"--{what}: '{name}' is not a valid name")
    return names


def create_token(
    store: ExecutionStore,
    user: str,
    scope: Scope | str = Scope.RUN,
    *,
    expires: str | None = None,
    environments: Iterable[str] = (),
    processes: Iterable[str] = (),
) -> str:
    """Create and store a new token for `user`; returns the token (shown once, never stored).

    `expires` is ISO UTC (`parse_expires`); `environments` and `processes` limit what the
    token reads and runs (none: any). An admin token takes no limits: it changes processes
    for every environment."""
    if not _USER.match(user):
        raise TokenError(f"invalid user name {user!r}: letters, digits and _ . @ + - only")
    try:
        scope = Scope(scope)
    except ValueError:
        raise TokenError(f"unknown scope {scope!r}: read, run or admin") from None
    environment_names = _names(environments, _ENVIRONMENT, "environment")
    process_names = _names(processes, _PROCESS, "process")
    if scope is Scope.ADMIN and (environment_names or process_names):
        raise TokenError("an admin token takes no --environment or --process limits")
    if expires is not None:
        expires = iso_ms(parse_iso(expires))
    token = PREFIX + secrets.token_urlsafe(32)
    record = TokenRecord(
        hash_token(token), user, scope.value, iso_ms(), expires, None, environment_names,
        process_names,
    )  # fmt: skip
    store.add_token(record)
    return token


def refusal(record: TokenRecord, moment: str | None = None) -> str | None:
    """Why a stored token no longer works (`revoked`, `expired`), or None when it does."""
    if record.revoked is not None:
        return "revoked"
    if record.expires is not None and record.expires <= (moment or iso_ms()):
        return "expired"
    return None


def verify_token(store: ExecutionStore, token: str) -> TokenRecord | None:
    """The record of a valid token (neither revoked nor expired), or None."""
    if not token:
        return None
    record = store.find_token(hash_token(token))
    if record is None or refusal(record) is not None:
        return None
    return record


def find_by_id(store: ExecutionStore, token_id: str) -> TokenRecord:
    """The one token whose id (the start of its hash, as `token list` shows it) begins with
    `token_id` (at least 6 hex digits)."""
    wanted = token_id.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{6,64}", wanted):
        raise TokenError(f"'{token_id}' is not a token id (6 to 64 hex digits, as 'list' shows)")
    found = [record for record in store.token_records() if record.token_hash.startswith(wanted)]
    if not found:
        raise TokenError(f"no token with id '{token_id}'")
    if len(found) > 1:
        raise TokenError(f"id '{token_id}' names {len(found)} tokens: give more digits")
    return found[0]


def revoke(store: ExecutionStore, token_id: str) -> tuple[TokenRecord, bool]:
    """Revoke the token of this id; its record, and whether it was revoked now (False: it was
    already). Every API process refuses it within `CACHE_SECONDS`."""
    record = find_by_id(store, token_id)
    return record, store.revoke_token(record.token_hash, iso_ms())


class TokenCache:
    """Tokens verified lately, taken on trust for `ttl` seconds before the store is asked again:
    the API checks a token on every call, and asking the store costs about as much as reading
    an indexed page. So a revoked token keeps working for `ttl` seconds at most in an API
    process that verified it just before; an expired one stops at its expiry. Only valid
    tokens are remembered (by their hash), and at most `size` of them."""

    def __init__(
        self,
        store: ExecutionStore,
        ttl: float = CACHE_SECONDS,
        size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.size = size
        self.clock = clock
        self.wall = wall
        #: hash: (record, until when on `clock` it is trusted, its expiry on `wall`)
        self._seen: dict[str, tuple[TokenRecord, float, float]] = {}

    def trusted(self, token: str) -> TokenRecord | None:
        """The record of `token` if this cache trusts it now, without asking the store (so
        cheap that the API calls it on its event loop); None: `verify` must ask the store."""
        seen = self._seen.get(hash_token(token)) if token else None
        if seen is None or seen[1] <= self.clock():
            return None
        return seen[0] if seen[2] == math.inf or seen[2] > self.wall() else None

    def verify(self, token: str) -> TokenRecord | None:
        """As `verify_token`."""
        if not token:
            return None
        record = self.trusted(token)
        if record is not None:
            return record
        token_hash = hash_token(token)
        now_ = self.clock()
        record = self.store.find_token(token_hash)
        if record is None or refusal(record, iso_ms(_utc(self.wall()))) is not None:
            self._seen.pop(token_hash, None)
            return None
        if len(self._seen) >= self.size:
            self._seen.clear()
        expires = math.inf if record.expires is None else parse_iso(record.expires).timestamp()
        self._seen[token_hash] = (record, now_ + self.ttl, expires)
        return record


def allows(record: TokenRecord, needed: Scope) -> bool:
    """Whether a token's scope covers `needed` (`admin` covers `run`, which covers `read`)."""
    return _RANK.get(record.scope, 0) >= _RANK[needed.value]


def allows_environment(record: TokenRecord, environment: str) -> bool:
    """Whether a token may read and run in `environment`."""
    return not record.environments or environment in record.environments


def allows_process(record: TokenRecord, name: str) -> bool:
    """Whether a token may read the executions of, and run, the process `name`."""
    return not record.processes or name in record.processes


def restrict(query: Query, processes: tuple[str, ...]) -> Query:
    """`query` limited to the executions of `processes` (none: unchanged): a condition on the
    name ANDed with its filter, which every read of every store applies (pages, totals,
    `_search`, `_distinct`, `_fieldinfo`, `_aggregate`), as it applies the environment."""
    if not processes:
        return query
    limit = Condition("name", "in", tuple(processes))
    where = limit if query.where is None else And((limit, query.where))
    return dataclasses.replace(query, where=where)
