"""API tokens: opaque, random, stored only as a SHA-256 hash, each bound to a user and a scope."""

from __future__ import annotations

import hashlib
import re
import secrets

from engine.constants import Scope
from engine.store.base import ExecutionStore, TokenRecord
from engine.timeutil import iso_ms

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


def allows(record: TokenRecord, needed: Scope) -> bool:
    """Whether a token's scope covers `needed` (`run` covers `read`)."""
    return record.scope == Scope.RUN.value or record.scope == needed.value
