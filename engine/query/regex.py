"""Regular expressions in linear time: every pattern of the query language (`regex(…)`,
`$regex`, a relaxed `/…/flags` literal, a `$match` of `_aggregate`) is checked here when the
query is parsed, on every store, and SQLite evaluates it here too.

Patterns take RE2's syntax (https://github.com/google/re2/wiki/Syntax) and RE2 evaluates them
(the `google-re2` package): its matching takes time linear in the text whatever the pattern,
where a backtracking engine (Python's `re`, PCRE) can take exponential time on `(a+)+$`. What
only a backtracking engine can do (backreferences, lookahead and lookbehind, atomic groups,
possessive quantifiers) RE2 refuses, and so does the query: a 400 naming the pattern and why.
MongoDB's server evaluates patterns with PCRE; it only ever receives patterns RE2 accepts,
there bounded by PCRE's match limit and the read's `maxTimeMS`.

RE2 has no `x` (extended) flag: a pattern given with it (`$options: "x"`, `/…/x`) has its
whitespace and `#` comments taken out here, as the flag would, and both stores get the result.
"""

from __future__ import annotations

import functools
from typing import Any

import re2

from procexec.engine.errors import BadRequest, label

#: longest regular expression accepted, in characters
MAX_REGEX = 500
#: the memory RE2 may use for one pattern, its compiled program and its DFA's cache (a
#: pattern whose program needs more is refused; a DFA out of room falls back on RE2's NFA,
#: still linear); at most `CACHED_PATTERNS` compiled patterns are kept
MAX_MEMORY = 1 << 20
#: the largest program accepted, in RE2's instructions: linear time is time proportional to
#: the text's length times the program's size at worst (RE2's NFA, when its DFA runs out of
#: room), about 3 ns per instruction and byte here; `(a+)+$` is 6, `(.*a){20}` 184
MAX_PROGRAM = 1000
CACHED_PATTERNS = 64
#: how much of a refused pattern an error message shows
EXCERPT_CHARS = 40
#: the flags of `$options` and of a `/…/flags` literal
FLAGS = "imsx"

_OPTIONS = re2.Options()
_OPTIONS.max_mem = MAX_MEMORY
_OPTIONS.never_capture = True  # only whether it matches counts: no groups to report
_OPTIONS.log_errors = False  # a refused pattern is the caller's error, not the service's

#: how RE2 names what only a backtracking engine does (`\\1`, `(?=`, `(?<=`, `(?>`, `a++`)
_BACKTRACKING = ("invalid perl operator", "invalid escape sequence", "bad repetition operator")
_HINT = (
    " (patterns take RE2's syntax, matched in linear time: no backreferences, lookaround, "
    "atomic groups or possessive quantifiers)"
)


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """At most `limit` characters of `text`, control and non-ASCII characters escaped, `…` when
    cut: what an error message may echo of a caller's input."""
    cut = text[:limit].encode("ascii", "backslashreplace").decode("ascii")
    escaped = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in cut)
    return escaped + ("…" if len(text) > limit else "")


@functools.lru_cache(maxsize=CACHED_PATTERNS)
def _compiled(pattern: str) -> Any:
    return re2.compile(pattern, _OPTIONS)


def matches(pattern: str, value: Any) -> bool:
    """Whether `pattern` (checked by `check_regex`) matches somewhere in `value` (SQLite's
    `regexp(pattern, value)`; a missing value matches nothing)."""
    if value is None:
        return False
    text = value if isinstance(value, str) else str(value)
    return _compiled(pattern).search(text.encode("utf-8", "surrogatepass")) is not None


def check_regex(field_name: str, pattern: str) -> str:
    """`pattern`, when RE2 takes it within the bounds; else a `BadRequest` naming it and why."""
    if len(pattern) > MAX_REGEX:
        raise BadRequest(
            f"{label(field_name)}: regular expression '{excerpt(pattern)}' is longer than "
            f"{MAX_REGEX} characters"
        )
    try:
        size = _compiled(pattern).programsize
    except re2.error as exc:
        reason = exc.args[0] if exc.args else b"refused"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        hint = _HINT if reason.startswith(_BACKTRACKING) else ""
        if "too large" in reason:
            reason = f"too large for RE2's memory bound of {MAX_MEMORY // 1024} KiB"
        raise BadRequest(
            f"{label(field_name)}: bad regular expression '{excerpt(pattern)}': "
            f"{excerpt(str(reason), 2 * EXCERPT_CHARS)}{hint}"
        ) from None
    except UnicodeError:
        raise BadRequest(
            f"{label(field_name)}: bad regular expression '{excerpt(pattern)}': not valid Unicode"
        ) from None
    if size > MAX_PROGRAM:
        raise BadRequest(
            f"{label(field_name)}: bad regular expression '{excerpt(pattern)}': too complex, "
            f"{size} RE2 instructions (at most {MAX_PROGRAM})"
        )
    return pattern


def without_extended(pattern: str) -> str:
    """`pattern` as the `x` flag reads it: whitespace and `#` comments out, except escaped or
    inside a character class."""
    out: list[str] = []
    i, end = 0, len(pattern)
    last_close = pattern.rfind(":]")  # a `[:name:]` closes only before it: linear, not quadratic
    while i < end:
        char = pattern[i]
        if char == "\\":
            out.append(pattern[i : i + 2])
            i += 2
        elif char == "[":  # a class, as it is, to its closing ] (a leading ] is a literal)
            j = i + 1
            j += pattern.startswith("^", j)
            j += pattern.startswith("]", j)
            while j < end and pattern[j] != "]":
                if pattern.startswith("[:", j) and last_close >= j:
                    j = pattern.index(":]", j) + 2
                else:
                    j += 2 if pattern[j] == "\\" else 1
            out.append(pattern[i : j + 1])
            i = j + 1
        elif char == "#":  # a comment, to the end of its line
            newline = pattern.find("\n", i)
            i = end if newline < 0 else newline + 1
        else:
            if not char.isspace():
                out.append(char)
            i += 1
    return "".join(out)


def with_flags(field_name: str, pattern: str, flags: str) -> str:
    """`pattern` under `flags` (some of `FLAGS`), as one checked pattern: `(?ims)pattern`, the
    `x` flag applied here (RE2 has none)."""
    if "x" in flags:
        pattern = without_extended(pattern)
        flags = flags.replace("x", "")
    unique = "".join(sorted(set(flags), key=flags.index))
    return check_regex(field_name, f"(?{unique}){pattern}" if unique else pattern)
