"""API tokens on the embedded store: created once, stored hashed, checked by scope."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from procexec.engine.domain import Scope
from procexec.engine.store.sqlite import SQLiteStore
from procexec.engine.tokens import (
    PREFIX,
    TokenCache,
    allows,
    create_token,
    hash_token,
    verify_token,
)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "tokens.db"


@pytest.fixture
def token_store(db: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(db)
    yield opened
    opened.close()


def stored_rows(db: Path) -> list[tuple[str, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT token_hash, user, scope, created FROM tokens").fetchall()


def test_create_and_verify(token_store: SQLiteStore, db: Path) -> None:
    token = create_token(token_store, "alice")
    assert token.startswith(PREFIX)
    assert re.match(r"^pe_[A-Za-z0-9_-]{43}$", token)
    record = verify_token(token_store, token)
    assert record is not None
    assert record.user == "alice"
    assert record.scope == "run"
    assert record.token_hash == hashlib.sha256(token.encode()).hexdigest() == hash_token(token)
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", record.created)
    # only the hash is stored
    rows = stored_rows(db)
    assert rows == [(record.token_hash, "alice", "run", record.created)]
    assert all(token not in value for value in rows[0])


def test_tokens_survive_a_new_store_on_the_same_file(token_store: SQLiteStore, db: Path) -> None:
    token = create_token(token_store, "bob", Scope.READ)
    token_store.close()
    reopened = SQLiteStore(db)
    try:
        record = verify_token(reopened, token)
        assert record is not None and (record.user, record.scope) == ("bob", "read")
    finally:
        reopened.close()


def test_wrong_tokens_are_refused(token_store: SQLiteStore) -> None:
    token = create_token(token_store, "alice")
    assert verify_token(token_store, "") is None
    assert verify_token(token_store, token + "x") is None
    assert verify_token(token_store, token[:-1]) is None
    assert verify_token(token_store, token.upper()) is None
    assert verify_token(token_store, hash_token(token)) is None  # the hash is not a token
    assert verify_token(token_store, token) is not None


def test_each_token_is_new(token_store: SQLiteStore, db: Path) -> None:
    tokens = [create_token(token_store, "alice") for _ in range(3)]
    assert len(set(tokens)) == 3
    for token in tokens:
        record = verify_token(token_store, token)
        assert record is not None and record.user == "alice"
    assert len(stored_rows(db)) == 3


@pytest.mark.parametrize(
    ("scope", "read", "run", "admin"),
    [
        (Scope.READ, True, False, False),
        (Scope.RUN, True, True, False),
        (Scope.ADMIN, True, True, True),
        ("read", True, False, False),
        ("run", True, True, False),
        ("admin", True, True, True),
    ],
)
def test_scopes(
    token_store: SQLiteStore, scope: Scope | str, read: bool, run: bool, admin: bool
) -> None:
    record = verify_token(token_store, create_token(token_store, "carol", scope))
    assert record is not None
    assert record.scope == str(scope)
    assert allows(record, Scope.READ) is read
    assert allows(record, Scope.RUN) is run
    assert allows(record, Scope.ADMIN) is admin


@pytest.mark.parametrize(
    "user", ["", "bob smith", "a" * 129, "x;y", "eve/admin", "新", "tab\there", "line\n"]
)
def test_invalid_users_are_refused_and_nothing_is_stored(
    token_store: SQLiteStore, db: Path, user: str
) -> None:
    with pytest.raises(ValueError, match="invalid user name"):
        create_token(token_store, user)
    assert stored_rows(db) == []


@pytest.mark.parametrize("user", ["alice", "com_walkfares", "a.b@example.com", "x+y-z", "a" * 128])
def test_valid_users(token_store: SQLiteStore, user: str) -> None:
    record = verify_token(token_store, create_token(token_store, user, "read"))
    assert record is not None and record.user == user


def test_unknown_scopes_are_refused(token_store: SQLiteStore, db: Path) -> None:
    for scope in ("owner", "READ", ""):
        with pytest.raises(ValueError):
            create_token(token_store, "alice", scope)
    assert stored_rows(db) == []


def test_a_token_cache_trusts_a_valid_token_for_its_ttl(token_store: SQLiteStore, db: Path) -> None:
    now = [100.0]
    cache = TokenCache(token_store, ttl=5.0, clock=lambda: now[0])
    token = create_token(token_store, "alice", "read")
    record = cache.verify(token)
    assert record is not None and record.user == "alice"
    with sqlite3.connect(db) as conn:  # gone from the store behind the cache's back
        conn.execute("DELETE FROM tokens")
    now[0] += 4.9
    assert cache.verify(token) == record  # still trusted
    now[0] += 0.2
    assert cache.verify(token) is None  # asked again past the ttl: gone
    assert verify_token(token_store, token) is None


def test_a_token_cache_remembers_only_valid_tokens_and_only_so_many(
    token_store: SQLiteStore,
) -> None:
    cache = TokenCache(token_store, size=2)
    for attempt in range(50):
        assert cache.verify(f"{PREFIX}forged{attempt}") is None
    assert cache.verify("") is None
    assert len(cache._seen) == 0
    tokens = [create_token(token_store, f"user{n}", "run") for n in range(3)]
    assert [getattr(cache.verify(token), "user", None) for token in tokens] == [
        "user0",
        "user1",
        "user2",
    ]
    assert 0 < len(cache._seen) <= 2
