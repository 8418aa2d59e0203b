"""The relaxed JSON of the platform's `_filter` examples: `{_id:/AB/}`, `{name:/^ecb/i}`.

A superset of JSON, read by a small recursive-descent parser:

- an object key may be a bare word of letters, digits, `_`, `$`, `.` and `-`
  (`{phases.status: "failed", $or: [...]}`); quoted keys are JSON strings;
- a value may be a regular-expression literal `/pattern/flags` (flags among `i m s x`; `\\/`
  is a slash, a `/` inside `[...]` does not end it), read as `{"$regex": "pattern",
  "$options": "flags"}` (no `$options` without flags); as the value of `$regex` itself it is
  the pattern, its flags going to `$options`;
- everything else is JSON: double-quoted strings, numbers, `true`, `false`, `null`; a bare
  word as a value (`{status: failed}`) or a single-quoted string is refused with a message
  saying to quote it.

Strict JSON reads the same; `loads` raises `RelaxedJsonError` with a message and a position.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from procexec.engine.errors import excerpt
from procexec.engine.limits import MAX_IN_VALUES

#: how deeply objects and arrays may nest (the filter itself allows far less)
MAX_DEPTH = 64
#: the most items an array or an object may hold: a filter's longest list is an `$in` of
#: `MAX_IN_VALUES` values; the reader stops at the item past it, not at the end of the text
MAX_ITEMS = MAX_IN_VALUES
#: the flags a regular-expression literal may carry: MongoDB's `$options` that Python shares
REGEX_FLAGS = "imsx"

_SPACE = re.compile(r"\s*")
_BARE = re.compile(r"[\w$.\-]+")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_FLAGS = re.compile(r"[A-Za-z]*")
_CONSTANTS: dict[str, Any] = {"true": True, "false": False, "null": None}
_DECODER = json.JSONDecoder()


class RelaxedJsonError(ValueError):
    """Malformed input: what was expected, and where."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at position {position}")
        self.msg = message
        self.pos = position


@dataclass(frozen=True)
class _Regex:
    pattern: str
    flags: str

    def as_operators(self) -> dict[str, str]:
        return {"$regex": self.pattern, **({"$options": self.flags} if self.flags else {})}


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, message: str, position: int | None = None) -> RelaxedJsonError:
        return RelaxedJsonError(message, self.pos if position is None else position)

    def peek(self) -> str:
        match = _SPACE.match(self.text, self.pos)
        assert match is not None
        self.pos = match.end()
        return self.text[self.pos : self.pos + 1]

    def expect(self, char: str, what: str) -> None:
        if self.peek() != char:
            raise self.fail(f"expected {what}")
        self.pos += 1

    def document(self) -> Any:
        value = self.value(0)
        if isinstance(value, _Regex):
            value = value.as_operators()
        if self.peek():
            raise self.fail("unexpected text after the filter")
        return value

    def value(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise self.fail(f"nested too deeply (at most {MAX_DEPTH} levels)")
        char = self.peek()
        if char == "{":
            return self.object(depth)
        if char == "[":
            return self.array(depth)
        if char == '"':
            return self.string()
        if char == "/":
            return self.regex()
        if char == "'":
            raise self.fail("strings take double quotes")
        number = _NUMBER.match(self.text, self.pos)
        word = _BARE.match(self.text, self.pos)
        if number and (not word or word.end() <= number.end()):
            try:
                value = json.loads(number.group())
            except ValueError:  # more digits than Python converts
                raise self.fail("the number is too long") from None
            self.pos = number.end()
            return value
        if word:
            if word.group() in _CONSTANTS:
                self.pos = word.end()
                return _CONSTANTS[word.group()]
            shown = excerpt(word.group())
            raise self.fail(f"the value '{shown}' must be quoted (\"{shown}\")")
        raise self.fail("expected a value" if char else "expected a value, found the end")

    def object(self, depth: int) -> dict[str, Any]:
        self.pos += 1
        result: dict[str, Any] = {}
        if self.peek() == "}":
            self.pos += 1
            return result
        flagged = False  # `$options` came from the flags of a /regex/
        while True:
            if len(result) == MAX_ITEMS:
                raise self.fail(f"an object of more than {MAX_ITEMS} keys")
            key = self.key()
            self.expect(":", f"':' after '{excerpt(key)}'")
            start = self.pos
            value = self.value(depth + 1)
            if isinstance(value, _Regex):
                if key == "$regex":
                    if value.flags and "$options" in result:
                        raise self.fail("a /regex/ with flags and '$options' in one object", start)
                    if value.flags:
                        result["$options"], flagged = value.flags, True
                    value = value.pattern
                else:
                    value = value.as_operators()
            elif key == "$options" and flagged:
                raise self.fail("a /regex/ with flags and '$options' in one object", start)
            result[key] = value
            char = self.peek()
            self.pos += 1
            if char == "}":
                return result
            if char != ",":
                self.pos -= 1
                raise self.fail("expected ',' or '}'")

    def key(self) -> str:
        char = self.peek()
        if char == '"':
            return self.string()
        if char == "'":
            raise self.fail("field names take double quotes or none")
        word = _BARE.match(self.text, self.pos)
        if not word:
            raise self.fail("expected a field name")
        self.pos = word.end()
        return word.group()

    def array(self, depth: int) -> list[Any]:
        self.pos += 1
        result: list[Any] = []
        if self.peek() == "]":
            self.pos += 1
            return result
        while True:
            if len(result) == MAX_ITEMS:
                raise self.fail(f"an array of more than {MAX_ITEMS} items")
            value = self.value(depth + 1)
            result.append(value.as_operators() if isinstance(value, _Regex) else value)
            char = self.peek()
            self.pos += 1
            if char == "]":
                return result
            if char != ",":
                self.pos -= 1
                raise self.fail("expected ',' or ']'")

    def string(self) -> str:
        try:
            value, self.pos = _DECODER.raw_decode(self.text, self.pos)
        except json.JSONDecodeError as exc:
            raise self.fail(exc.msg, exc.pos) from None
        assert isinstance(value, str)
        return value

    def regex(self) -> _Regex:
        start = self.pos
        text = self.text
        index = start + 1
        pattern: list[str] = []
        in_class = False
        while True:
            if index >= len(text):
                raise self.fail("unterminated regular expression (/pattern/flags)", start)
            char = text[index]
            if char == "\\":
                if index + 1 >= len(text):
                    raise self.fail("unterminated regular expression (/pattern/flags)", start)
                following = text[index + 1]
                pattern.append("/" if following == "/" else char + following)
                index += 2
                continue
            if char == "/" and not in_class:
                break
            if char == "[":
                in_class = True
            elif char == "]":
                in_class = False
            pattern.append(char)
            index += 1
        if not pattern:
            raise self.fail("empty regular expression", start)
        flags = _FLAGS.match(text, index + 1)
        assert flags is not None
        for flag in flags.group():
            if flag not in REGEX_FLAGS:
                raise self.fail(
                    f"regular expression flag '{flag}' is not supported (use some of i, m, s, x)",
                    flags.start(),
                )
        self.pos = flags.end()
        return _Regex("".join(pattern), "".join(dict.fromkeys(flags.group())))


def loads(text: str) -> Any:
    """The value of a relaxed JSON text (see the module's docstring)."""
    return _Parser(text).document()
