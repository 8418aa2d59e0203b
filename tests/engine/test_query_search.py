"""`_search`: the platform's free-text syntax, and the words it matches on."""

from __future__ import annotations

import sqlite3

import pytest

from procexec.engine.errors import BadRequest
from procexec.engine.query import parse_query
from procexec.engine.search import (
    AllOf,
    AnyOf,
    NoneOf,
    SearchNode,
    Term,
    normalized,
    parse_search,
    words,
)
from procexec.engine.store.sqlite.schema import FTS_TABLE


def t(*found: str) -> Term:
    return Term(tuple(found))


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("ECB_FX.EURUSD:SPOT", ["ecb", "fx", "eurusd", "spot"]),
        ("2021-07-01T16:30:13.390935800Z[UTC] info Completed LOAD",
         ["2021", "07", "01t16", "30", "13", "390935800z", "utc", "info", "completed", "load"]),
        ("Café Ünïcödé naïve", ["cafe", "unicode", "naive"]),
        ("e\u0301cole", ["ecole"]),  # a combining accent, as a precomposed one
        ("straße ÆBLE Øre", ["straße", "æble", "øre"]),
        ("a_b-c/d", ["a", "b", "c", "d"]),
        ("***", []),
        ("", []),
    ],
)  # fmt: skip
def test_words(text: str, found: list[str]) -> None:
    assert words(text) == found


def test_words_are_what_the_sqlite_index_cuts() -> None:
    """The FTS5 tokenizer of the store cuts the same words, or SQLite and MongoDB would differ."""
    texts = [
        "ECB_FX.EURUSD:SPOT",
        "Café Ünïcödé naïve e\u0301cole straße",
        "#BOE_RATES.GBP:ON 12.5% up-to-date",
        "Ǆemal İstanbul",
        "日本語 テキスト",
        "x\ue000y",
    ]
    conn = sqlite3.connect(":memory:")
    conn.execute(FTS_TABLE.replace("content='', ", ""))
    conn.execute("CREATE VIRTUAL TABLE terms USING fts5vocab(executions_fts, 'instance')")
    for rowid, text in enumerate(texts):
        conn.execute(
            "INSERT INTO executions_fts (rowid, name) VALUES (?, ?)",
            (rowid, text.replace("\ue000", " ")),
        )
    for rowid, text in enumerate(texts):
        indexed = [
            term
            for (term,) in conn.execute(
                "SELECT term FROM terms WHERE doc = ? ORDER BY offset", (rowid,)
            )
        ]
        assert indexed == words(text), text


def test_normalized() -> None:
    assert normalized("ECB_FX completed") == " ecb fx completed "
    assert normalized("--") == ""


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("ECB", t("ecb")),
        ("ECB_FX", t("ecb", "fx")),
        ("ecb failed", AllOf((t("ecb"), t("failed")))),
        ("ecb|boe", AnyOf((t("ecb"), t("boe")))),
        ("ecb | boe", AnyOf((t("ecb"), t("boe")))),
        # | binds tighter than a space
        ("ecb failed|timeout", AllOf((t("ecb"), AnyOf((t("failed"), t("timeout")))))),
        ("ecb|boe failed", AllOf((AnyOf((t("ecb"), t("boe"))), t("failed")))),
        ("-demo", NoneOf(t("demo"))),
        ("ecb -failed", AllOf((t("ecb"), NoneOf(t("failed"))))),
        ("--demo", NoneOf(NoneOf(t("demo")))),
        ("ecb-fx", t("ecb", "fx")),  # a dash inside a word is part of it
        ("-(a|b) c", AllOf((NoneOf(AnyOf((t("a"), t("b")))), t("c")))),
        ("(a b)|c", AnyOf((AllOf((t("a"), t("b"))), t("c")))),
        ('"completed load"', t("completed", "load")),
        ('-"completed load" x', AllOf((NoneOf(t("completed", "load")), t("x")))),
        ('a"b c"d', AllOf((t("a"), t("b", "c"), t("d")))),
        ("  Ünïcödé  ", t("unicode")),
        ("((a))", t("a")),
    ],
)
def test_search_syntax(text: str, tree: SearchNode) -> None:
    assert parse_search(text) == tree
    assert parse_query([("_search", text)]).search == tree


def test_empty_search_is_no_search() -> None:
    assert parse_search("") is None
    assert parse_search("   ") is None
    assert parse_query([("_search", " ")]).search is None


def test_several_searches_are_anded() -> None:
    query = parse_query([("_search", "ecb"), ("_search", "-failed"), ("name", "ECB_FX")])
    assert query.search == AllOf((t("ecb"), NoneOf(t("failed"))))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("(ecb", "unbalanced parentheses: '(' at position 0 is never closed"),
        ("(a (b)", "unbalanced parentheses: '(' at position 0 is never closed"),
        ("ecb)", "unexpected ')' at position 3: no '(' opens it"),
        (")", "unexpected ')' at position 0"),
        ("()", "empty group '()'"),
        ("a ( ) b", "empty group '()'"),
        ("|a", "'|' at position 0 needs a term on its left"),
        ("a |", "'|' at position 2 needs a term on its right"),
        ("a||b", "'|' at position 1 needs a term on its right"),
        ("(a|)", "'|' at position 2 needs a term on its right"),
        ("- a", "'-' at position 0 must be followed by a term"),
        ("a -", "'-' at position 2 must be followed by a term"),
        ("-|a", "'-' at position 0 must be followed by a term"),
        ('"open', "unterminated quote"),
        ('""', "'\"\"' at position 0 has no letters or digits"),
        ("***", "'***' at position 0 has no letters or digits to search for"),
        ("a " + "b " * 60, "too many terms (at most 50)"),
        ("(" * 30 + "a" + ")" * 30, "nested too deeply (at most 20 levels)"),
        ("-" * 30 + "a", "nested too deeply"),
        ("x" * 2001, "longer than 2000 characters"),
    ],
)
def test_search_errors(text: str, words: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_query([("_search", text)])
    message = str(caught.value)
    assert message.startswith("_search: "), message
    assert words in message, message
