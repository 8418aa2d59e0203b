"""The life of an API token on both stores: an expiry, a revocation, a listing without
secrets, limits to environments and processes applied to every read, and the tokens of an
earlier version kept working."""

from __future__ import annotations

import copy
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from procexec.engine.domain import Scope
from procexec.engine.query import parse_query
from procexec.engine.store.base import ExecutionStore
from procexec.engine.store.sqlite import SQLiteStore
from procexec.engine.timeutil import iso_ms, parse_iso
from procexec.engine.tokens import (
    TokenCache,
    TokenError,
    create_token,
    find_by_id,
    hash_token,
    parse_expires,
    restrict,
    revoke,
    verify_token,
)
from tests.engine.query_strategies import DOCS, PROD

LIMIT = ("ECB_FX", "DEMO")


def test_a_revoked_token_is_refused_and_listed_as_revoked(store: ExecutionStore) -> None:
    token = create_token(store, "alice", Scope.RUN)
    other = create_token(store, "bob", Scope.READ)
    record = verify_token(store, token)
    assert record is not None and record.revoked is None
    revoked, now = revoke(store, record.id)
    assert now and revoked.token_hash == record.token_hash
    assert verify_token(store, token) is None
    assert verify_token(store, other) is not None  # only that one
    _, now = revoke(store, record.id)
    assert not now  # revoked already: its first time kept
    listed = {r.user: r for r in store.token_records()}
    assert listed["alice"].revoked is not None and listed["bob"].revoked is None
    assert store.find_token(hash_token(token)) == listed["alice"]


def test_an_expired_token_is_refused(store: ExecutionStore) -> None:
    past = iso_ms(datetime.now(UTC) - timedelta(seconds=1))
    future = iso_ms(datetime.now(UTC) + timedelta(hours=1))
    expired = create_token(store, "alice", expires=past)
    valid = create_token(store, "alice", expires=future)
    assert verify_token(store, expired) is None
    record = verify_token(store, valid)
    assert record is not None and record.expires == future


def test_limits_are_stored_and_read_back(store: ExecutionStore) -> None:
    token = create_token(
        store, "carol", "read", environments=["staging", "staging"], processes=LIMIT
    )
    record = verify_token(store, token)
    assert record is not None
    assert (record.environments, record.processes) == (("staging",), LIMIT)
    plain = verify_token(store, create_token(store, "dave"))
    assert plain is not None and (plain.environments, plain.processes) == ((), ())
    assert (plain.expires, plain.revoked) == (None, None)


def test_token_ids_find_one_token(store: ExecutionStore) -> None:
    tokens = [create_token(store, f"user{n}") for n in range(5)]
    records = store.token_records()
    assert sorted(r.user for r in records) == [f"user{n}" for n in range(5)]
    assert [r.created for r in records] == sorted(r.created for r in records)  # oldest first
    by_hash = {r.token_hash: r for r in records}
    for token in tokens:
        record = by_hash[hash_token(token)]
        assert record.id == hash_token(token)[:12]
        assert find_by_id(store, record.id) == record
        assert find_by_id(store, record.id[:8].upper()) == record
    with pytest.raises(TokenError, match="no token with id"):
        find_by_id(store, next(p * 12 for p in "0f" if not any(r.id == p * 12 for r in records)))
    with pytest.raises(TokenError, match="is not a token id"):
        find_by_id(store, "pe_x")
    with pytest.raises(TokenError, match="is not a token id"):
        find_by_id(store, "abc")  # too short to name one


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("30d", 30 * 86400), ("12h", 12 * 3600), ("90m", 5400), ("2w", 14 * 86400), ("45s", 45)],
)
def test_expires_as_a_length_of_time(raw: str, seconds: int) -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC).timestamp()
    assert parse_iso(parse_expires(raw, start)).timestamp() == start + seconds


def test_expires_as_a_date() -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC).timestamp()
    assert parse_expires("2030-02-01", start) == "2030-02-01T00:00:00.000Z"
    assert parse_expires("2030-02-01T12:30:00+02:00", start) == "2030-02-01T10:30:00.000Z"
    for wrong, message in [
        ("2029-12-31", "not in the future"),
        ("0d", "not in the future"),
        ("tomorrow", "neither a length of time"),
        ("30 days", "neither a length of time"),
        ("-1d", "neither a length of time"),
        ("99999999999w", "too far away"),
    ]:
        with pytest.raises(TokenError, match=message):
            parse_expires(wrong, start)


def test_creation_refuses_bad_limits(store: ExecutionStore) -> None:
    for kwargs, message in [
        ({"environments": ["prod uction"]}, "--environment: 'prod uction'"),
        ({"processes": ["a/b"]}, "--process: 'a/b'"),
        ({"scope": "admin", "processes": ["DEMO"]}, "an admin token takes no"),
        ({"scope": "owner"}, "unknown scope"),
    ]:
        with pytest.raises(TokenError, match=message):
            create_token(store, "eve", **kwargs)  # type: ignore[arg-type]
    assert store.token_records() == []


def test_the_cache_drops_a_revoked_token_after_its_ttl(store: ExecutionStore) -> None:
    now = [100.0]
    cache = TokenCache(store, ttl=5.0, clock=lambda: now[0])
    token = create_token(store, "alice")
    record = cache.verify(token)
    assert record is not None
    revoke(store, record.id)
    assert cache.verify(token) == record  # trusted a while
    now[0] += 5.1
    assert cache.verify(token) is None
    now[0] -= 100  # and not trusted again once refused
    assert cache.verify(token) is None


def test_the_cache_trusts_without_the_store_only_what_it_verified_within_its_ttl(
    store: ExecutionStore,
) -> None:
    """`trusted` (what the API asks on its event loop) answers from the cache alone: nothing
    for a token not verified yet, nor once the ttl passed (then `verify` asks the store, which
    refuses a token revoked meanwhile), nor past a token's expiry."""
    now = [100.0]
    cache = TokenCache(store, ttl=5.0, clock=lambda: now[0])
    token = create_token(store, "alice")
    assert cache.trusted(token) is None  # never verified: the store must be asked
    assert cache.trusted("") is None
    record = cache.verify(token)
    assert record is not None
    assert cache.trusted(token) == record
    revoke(store, record.id)
    now[0] += 4.9
    assert cache.trusted(token) == record  # revoked, trusted until the ttl passes
    now[0] += 0.2
    assert cache.trusted(token) is None
    assert cache.verify(token) is None  # the store asked: revoked
    assert cache.trusted(token) is None
    wall = [datetime(2030, 1, 1, tzinfo=UTC).timestamp()]
    expiring = TokenCache(store, ttl=60.0, wall=lambda: wall[0])
    short = create_token(store, "bob", expires="2030-01-01T00:00:10Z")
    assert expiring.verify(short) is not None
    assert expiring.trusted(short) is not None
    wall[0] += 10.1
    assert expiring.trusted(short) is None


def test_the_cache_drops_an_expired_token_at_its_expiry(store: ExecutionStore) -> None:
    wall = [datetime(2030, 1, 1, tzinfo=UTC).timestamp()]
    cache = TokenCache(store, ttl=60.0, wall=lambda: wall[0])
    token = create_token(store, "alice", expires="2030-01-01T00:00:10Z")
    assert cache.verify(token) is not None
    wall[0] += 9.9
    assert cache.verify(token) is not None
    wall[0] += 0.2  # past its expiry, well within the cache's ttl
    assert cache.verify(token) is None


def test_tokens_of_an_earlier_version_keep_working(tmp_path: Path) -> None:
    """A store made before expiries and limits: its tokens table gains the columns, and its
    tokens work as before, with no expiry and no limits."""
    db = tmp_path / "old.db"
    token = "pe_" + "x" * 43
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TABLE tokens (token_hash TEXT PRIMARY KEY, user TEXT NOT NULL, "
            "scope TEXT NOT NULL, created TEXT NOT NULL)"
        )
        conn.execute(
            "INSERT INTO tokens VALUES (?, 'old', 'run', '2021-07-01T00:00:00.000Z')",
            (hash_token(token),),
        )
    store = SQLiteStore(db)
    try:
        record = verify_token(store, token)
        assert record is not None
        assert (record.user, record.scope, record.expires, record.revoked) == (
            "old", "run", None, None,
        )  # fmt: skip
        assert (record.environments, record.processes) == ((), ())
        revoke(store, record.id)
        assert verify_token(store, token) is None
    finally:
        store.close()
    reopened = SQLiteStore(db)  # opening again changes nothing
    try:
        assert len(reopened.token_records()) == 1
    finally:
        reopened.close()


def test_mongo_tokens_of_an_earlier_version_keep_working() -> None:
    """A token document written before expiries and limits (four fields) reads as one with
    no expiry and no limits, and can be revoked."""
    from tests.engine.conftest import mongo_database

    with mongo_database() as mongo:
        token = "pe_" + "y" * 43
        mongo.tokens.insert_one(
            {"_id": hash_token(token), "user": "old", "scope": "read", "created": "2021"}
        )
        record = verify_token(mongo, token)
        assert record is not None and record.scope == "read" and record.processes == ()
        assert revoke(mongo, record.id)[1]
        assert verify_token(mongo, token) is None


@pytest.fixture
def corpus(store: ExecutionStore) -> ExecutionStore:
    for doc in DOCS:
        store.insert(copy.deepcopy(doc))
    return store


def _query(*params: tuple[str, str]) -> object:
    return restrict(parse_query(params, PROD), LIMIT)


def test_a_limit_holds_on_every_read(corpus: ExecutionStore) -> None:
    """Pages, totals, `_search`, `_distinct`, `_fieldinfo`, `_aggregate`: each sees only the
    limited processes' executions, whatever the query asks."""
    expected = [d for d in DOCS if d["environment"] == PROD and d["name"] in LIMIT]
    assert expected and len(expected) < len([d for d in DOCS if d["environment"] == PROD])
    rows, total = corpus.list(restrict(parse_query([("_limit", "-1")], PROD), LIMIT))
    assert total == len(expected) and {r["_id"] for r in rows} == {d["_id"] for d in expected}
    rows, total = corpus.list(restrict(parse_query([("_limit", "1")], PROD), LIMIT))
    assert total == len(expected) and len(rows) == 1
    for params in (
        [("name", "BOE_RATES")],
        [("name", "in(BOE_RATES,FX_ECB)")],
        [("_filter", "name=BOE_RATES or name=DEMO")],
        [("_filter", '{"$or":[{"name":"BOE_RATES"},{"name":{"$ne":"x"}}]}')],
        [("status", "failed")],
        [("_search", "Completed")],
    ):
        query = restrict(parse_query([*params, ("_limit", "-1")], PROD), LIMIT)
        rows, total = corpus.list(query)
        assert {r["name"] for r in rows} <= set(LIMIT), params
        assert total == len(rows), params
        docs, total_json = corpus.list_json(query)
        assert (len(docs), total_json) == (len(rows), total), params
    distinct = corpus.distinct(restrict(parse_query([("_distinct", "name")], PROD), LIMIT))
    assert set(distinct) == {d["name"] for d in expected}
    runs = corpus.distinct(restrict(parse_query([("_distinct", "runAs")], PROD), LIMIT))
    assert set(runs) == {d["runAs"] for d in expected}
    buckets = corpus.fieldinfo(restrict(parse_query([("_fieldinfo", "name")], PROD), LIMIT))
    assert {b["_id"] for b in buckets} == {d["name"] for d in expected}
    assert sum(b["count"] for b in buckets) == len(expected)
    pipeline = '[{"$group":{"_id":"$name","n":{"$sum":1}}}]'
    results = corpus.aggregate(restrict(parse_query([("_aggregate", pipeline)], PROD), LIMIT))
    assert {r["_id"] for r in results} == {d["name"] for d in expected}
    assert sum(r["n"] for r in results) == len(expected)


def test_no_limit_changes_nothing() -> None:
    query = parse_query([("status", "failed")], PROD)
    assert restrict(query, ()) is query
