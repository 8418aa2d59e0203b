"""Regular expressions in linear time (`engine.query.regex`): RE2 checks every pattern when a
query is read, SQLite's `regexp` matches with it under the read's deadline, and never under the
event loop's budget."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from procexec.engine.errors import BadRequest, QueryTimeout
from procexec.engine.query import parse_query
from procexec.engine.query.regex import (
    MAX_REGEX,
    check_regex,
    excerpt,
    matches,
    with_flags,
    without_extended,
)
from procexec.engine.store.base import InlineBudgetExceeded
from procexec.engine.store.sqlite import SQLiteStore
from tests.engine.query_strategies import DOCS, PROD


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("^ECB", "ECB_FX", True),
        ("(?i)^ecb", "ECB_FX", True),
        ("FX$", "ECB_FX", True),
        ("^FX", "ECB_FX", False),
        ("(a+)+$", "a" * 100_000 + "!", False),  # hours for a backtracking engine
        ("(a|aa)+$", "a" * 100_000, True),
        ("Ün", "Café_Ünï", True),
        ("^.{8}$", "Café_Ünï", True),  # characters, not bytes
        ("1", 12, True),  # a number as text
        ("", None, False),  # a missing value matches nothing
    ],
)
def test_matches(pattern: str, text: object, expected: bool) -> None:
    assert matches(check_regex("f", pattern), text) is expected


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(a)\\1", "invalid escape sequence: \\1"),
        ("a(?=b)", "invalid perl operator: (?="),
        ("a(?!b)", "invalid perl operator: (?!"),
        ("(?<=a)b", "invalid perl operator: (?<="),
        ("(?>a)", "invalid perl operator: (?>"),
        ("a++", "bad repetition operator: ++"),
        ("(", "missing ): ("),
        ("a{1001}", "invalid repetition size: {1001}"),
        ("(?i)(\\pL{1,10}\\s?){40}z", "too large for RE2's memory bound of 1024 KiB"),
        ("(\\w+\\s*){120}!", "too complex, 1084 RE2 instructions (at most 1000)"),
    ],
)
def test_what_re2_refuses_is_a_bad_request_naming_the_pattern_and_why(
    pattern: str, reason: str
) -> None:
    with pytest.raises(BadRequest) as refused:
        check_regex("name", pattern)
    assert str(refused.value).startswith(f"name: bad regular expression '{pattern}': {reason}")


def test_the_hint_names_what_backtracking_alone_does() -> None:
    with pytest.raises(BadRequest) as refused:
        check_regex("name", "(a)\\1")
    assert "no backreferences, lookaround" in str(refused.value)
    with pytest.raises(BadRequest) as refused:
        check_regex("name", "(")
    assert "backreferences" not in str(refused.value)  # a plain syntax error


def test_a_pattern_too_long_is_refused_with_a_short_excerpt() -> None:
    check_regex("name", "a" * MAX_REGEX)
    with pytest.raises(BadRequest) as refused:
        check_regex("name", "a" * (MAX_REGEX + 1))
    assert str(refused.value) == (
        f"name: regular expression '{'a' * 40}…' is longer than {MAX_REGEX} characters"
    )


def test_an_excerpt_escapes_what_a_message_should_not_carry() -> None:
    assert excerpt("a\x00b\nc\u00e9\u202e") == "a\\x00b\\x0ac\\xe9\\u202e"
    assert excerpt("x" * 50) == "x" * 40 + "…"
    with pytest.raises(BadRequest) as refused:
        check_regex("name", "\x00(?=")
    assert "'\\x00(?='" in str(refused.value)


@pytest.mark.parametrize(
    ("pattern", "flags", "expected"),
    [
        ("^ecb", "", "^ecb"),
        ("^ecb", "i", "(?i)^ecb"),
        ("^ecb", "ims", "(?ims)^ecb"),
        ("^ecb", "ii", "(?i)^ecb"),
        (" ^ e c b # the name\n _ ", "x", "^ecb_"),
        ("^ecb", "ix", "(?i)^ecb"),
    ],
)
def test_flags(pattern: str, flags: str, expected: str) -> None:
    assert with_flags("name", pattern, flags) == expected


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("a b", "ab"),
        ("a\\ b", "a\\ b"),  # an escaped space stays
        ("a\\#b", "a\\#b"),  # so does an escaped #
        ("[ #]b", "[ #]b"),  # and a class
        ("[]a ]b", "[]a ]b"),  # whose leading ] is a literal
        ("[^] ]b", "[^] ]b"),
        ("[[:alpha:] ]b", "[[:alpha:] ]b"),
        ("a # comment\nb", "ab"),
        ("a # comment", "a"),
    ],
)
def test_the_x_flag_takes_out_whitespace_and_comments(pattern: str, expected: str) -> None:
    assert without_extended(pattern) == expected


# --- SQLite's regexp --------------------------------------------------------------------------

#: runs with long values that a pattern almost matches: too few for SQLite's progress handler
#: to look at the clock during a scan (every 1000 steps)
LONG_RUNS = 10
#: a pattern RE2 matches in linear time, but slowly (its DFA out of room, its NFA at work)
SLOW_PATTERN = "(\\w+\\s*){110}!"


@pytest.fixture
def long_store(tmp_path: Path) -> SQLiteStore:
    store = SQLiteStore(tmp_path / "x.db")
    base = next(doc for doc in DOCS if doc["environment"] == PROD)
    message = "abcdefghij klmnop " * 40_000
    for i in range(LONG_RUNS):
        store.insert({**copy.deepcopy(base), "_id": f"long{i:04d}", "message": message})
    return store


def test_a_regexp_scan_stops_at_the_reads_deadline(long_store: SQLiteStore) -> None:
    """The deadline holds by the look each match takes at it: the scan's rows are too few for
    the progress handler's."""
    query = parse_query([("message", f"regex({SLOW_PATTERN})")])
    with pytest.raises(QueryTimeout), long_store.limited(0.001):
        long_store.list_json(query)
    assert long_store.list_json(query) == ([], 0)  # without a limit, answered in full


def test_under_the_event_loops_budget_a_regexp_gives_up_at_once(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "x.db")
    store.insert(copy.deepcopy(next(doc for doc in DOCS if doc["environment"] == PROD)))
    bounded = store.inline()
    with pytest.raises(InlineBudgetExceeded), bounded:
        store.list_json(parse_query([("name", "regex(.)")]))
    with store.inline():  # the budget serves the next call
        assert store.list_json(parse_query([("name", "ne(x)")]))[1] == 1
    assert store.list_json(parse_query([("name", "regex(.)")]))[1] == 1
