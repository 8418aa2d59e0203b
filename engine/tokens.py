"""API tokens: opaque, random, stored only as a SHA-256 hash, each bound to a user and a scope."""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Callable

from procexec.engine.domain import Scope
from procexec.engine.store.base import ExecutionStore, TokenRecord
from procexec.engine.timeutil import iso_ms

PREFIX = "pe_"
_USER = re.compile(r"^[A-Za-z0-9_.@+-]{1,128}\Z")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(store: ExecutionStore, user: str, scope: Scope | str = Scope.RUN) -> str:
    """Create and store a new token for `user`; returns the token (shown once, never stored)."""
    if not _USER.match(user):
        raise ValueError(f"invalid user name {user!r}: letters, digits and _ . @ + - only")
    scope = Scope(scope)
    token = PREFIX + secrets.token_urlsafe(32)
    store.add_token(TokenRecord(hash_token(token), user, scope.value, iso_ms()))
    return token


def verify_token(store: ExecutionStore, token: str) -> TokenRecord | None:
    """The record of a valid token, or None."""
    if not token:
        return None
    return store.find_token(hash_token(token))


class TokenCache:
    """Tokens verified lately, taken on trust for `ttl` seconds before the store is asked again:
    the API checks a token on every call, and asking the store costs about as much as reading
    an indexed page. Tokens are never deleted today; were one deleted, it would keep working
    for `ttl` seconds at most. Only valid tokens are remembered (by their hash), and at most
    `size` of them."""

    def __init__(
        self,
        store: ExecutionStore,
        ttl: float = 5.0,
        size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.size = size
        self.clock = clock
        self._seen: dict[str, tuple[TokenRecord, float]] = {}

    def verify(self, token: str) -> TokenRecord | None:
        """As `verify_token`."""
        if not token:
            return None
        token_hash = hash_token(token)
        seen = self._seen.get(token_hash)
        now = self.clock()
        if seen is not None and seen[1] > now:
            return seen[0]
        record = self.store.find_token(token_hash)
        if record is not None:
            if len(self._seen) >= self.size:
                self._seen.clear()
            self._seen[token_hash] = (record, now + self.ttl)
        return record


def allows(record: TokenRecord, needed: Scope) -> bool:
    """Whether a token's scope covers `needed` (`run` covers `read`)."""
    return record.scope == Scope.RUN.value or record.scope == needed.value
