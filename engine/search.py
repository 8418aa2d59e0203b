"""`_search`: the free-text part of the list call, parsed, and the words it matches on.

Syntax (the platform's): words separated by spaces must all match (AND), `a|b` matches either
(OR, binding tighter than a space), a leading `-` excludes (NOT), parentheses group, and
`"two words"` is a phrase. Matching is case-insensitive and ignores diacritics.

A document is searched through the text of its `_id`, `name`, `message`, `reason` and every
log line of every phase. Each text is cut into *words*: runs of Unicode letters and digits,
lower-cased, accents removed (`ECB_FX.EURUSD:SPOT` is `ecb fx eurusd spot`). A term (one
query word or a quoted phrase) is itself cut into words and matches a text that holds those
words one after the other, so `EURUSD` finds `#ECB_FX.EURUSD:SPOT` and `"completed load"`
finds `... info Completed LOAD`. A phrase never spans two log lines or two fields.

SQLite serves this with an FTS5 index whose tokenizer (`unicode61`, letters and digits,
diacritics removed) cuts words as `words()` does; MongoDB with a text index over the same
words, kept beside each document.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from procexec.engine.errors import BadRequest, excerpt

#: most terms one search may hold, and how deeply it may nest
MAX_TERMS = 50
MAX_DEPTH = 20
MAX_LENGTH = 2000

_WORD = re.compile(r"[^\W_]+")


def _fold(word: str) -> str:
    decomposed = unicodedata.normalize("NFD", word.lower())
    return "".join(ch for ch in decomposed if not unicodedata.category(ch).startswith("M"))


def words(text: str) -> list[str]:
    """The searchable words of a text: letters and digits, lower-cased, accents removed."""
    return [_fold(match) for match in _WORD.findall(unicodedata.normalize("NFC", text))]


def normalized(text: str) -> str:
    """A text as its words, each surrounded by single spaces (`' ecb fx '`); '' if none."""
    found = words(text)
    return f" {' '.join(found)} " if found else ""


@dataclass(frozen=True)
class Term:
    """Words that must appear one after the other in one searched text."""

    words: tuple[str, ...]


@dataclass(frozen=True)
class AllOf:
    items: tuple[SearchNode, ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[SearchNode, ...]


@dataclass(frozen=True)
class NoneOf:
    """True when `item` is not: a leading `-`."""

    item: SearchNode


SearchNode = Term | AllOf | AnyOf | NoneOf

_SPECIAL = frozenset('()|"')


class _SearchParser:
    def __init__(self, text: str, param: str) -> None:
        self.text = text
        self.param = param
        self.pos = 0
        self.terms = 0

    def fail(self, message: str) -> BadRequest:
        return BadRequest(f"{self.param}: {message}")

    def skip_spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.skip_spaces()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def parse(self) -> SearchNode:
        return self.conjunction(0)

    def conjunction(self, depth: int) -> SearchNode:
        items: list[SearchNode] = []
        while True:
            char = self.peek()
            if char == "":
                break
            if char == ")":
                if depth == 0:
                    raise self.fail(f"unexpected ')' at position {self.pos}: no '(' opens it")
                break
            if char == "|":
                raise self.fail(f"'|' at position {self.pos} needs a term on its left")
            items.append(self.disjunction(depth))
        if not items:
            raise self.fail(f"empty group '()' before position {self.pos}")
        return items[0] if len(items) == 1 else AllOf(tuple(items))

    def disjunction(self, depth: int) -> SearchNode:
        items = [self.unary(depth)]
        while self.peek() == "|":
            bar = self.pos
            self.pos += 1
            if self.peek() in ("", ")", "|"):
                raise self.fail(f"'|' at position {bar} needs a term on its right")
            items.append(self.unary(depth))
        return items[0] if len(items) == 1 else AnyOf(tuple(items))

    def unary(self, depth: int) -> SearchNode:
        if depth > MAX_DEPTH:
            raise self.fail(f"nested too deeply (at most {MAX_DEPTH} levels)")
        char = self.peek()
        start = self.pos
        if char == "-":
            self.pos += 1
            if self.pos >= len(self.text) or self.text[self.pos].isspace():
                raise self.fail(f"'-' at position {start} must be followed by a term")
            if self.text[self.pos] in "|)":
                raise self.fail(f"'-' at position {start} must be followed by a term")
            return NoneOf(self.unary(depth + 1))
        if char == "(":
            self.pos += 1
            node = self.conjunction(depth + 1)
            if self.peek() != ")":
                raise self.fail(f"unbalanced parentheses: '(' at position {start} is never closed")
            self.pos += 1
            return node
        if char == '"':
            end = self.text.find('"', start + 1)
            if end < 0:
                raise self.fail(f"unterminated quote: '\"' at position {start} is never closed")
            self.pos = end + 1
            return self.term(self.text[start + 1 : end], start)
        end = start
        while end < len(self.text) and not (self.text[end].isspace() or self.text[end] in _SPECIAL):
            end += 1
        self.pos = end
        return self.term(self.text[start:end], start)

    def term(self, raw: str, start: int) -> Term:
        found = words(raw)
        if not found:
            shown = excerpt(raw) if raw.strip() else f'"{excerpt(raw)}"'
            raise self.fail(f"'{shown}' at position {start} has no letters or digits to search for")
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise self.fail(f"too many terms (at most {MAX_TERMS})")
        return Term(tuple(found))


def parse_search(text: str, param: str = "_search") -> SearchNode | None:
    """Parse a `_search` value; None when it holds nothing to search for (only spaces)."""
    if len(text) > MAX_LENGTH:
        raise BadRequest(f"{param}: longer than {MAX_LENGTH} characters")
    if not text.strip():
        return None
    return _SearchParser(text, param).parse()
