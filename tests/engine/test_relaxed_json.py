"""The relaxed JSON reader of `_filter`: strict JSON reads the same, and no input raises
anything but `RelaxedJsonError`."""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from procexec.engine.errors import BadRequest
from procexec.engine.query import parse_query
from procexec.engine.relaxed_json import RelaxedJsonError, loads

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
BARE_KEY = re.compile(r"^[\w$.\-]+$")
FRAGMENTS = st.sampled_from(
    ["{", "}", "[", "]", ":", ",", "/", "\\", '"', "'", "a", "$or", "x.y", "1", "-", "e5", " ",
     "true", "null", "/a/i", "[/]", "\x00", "é"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(value=JSON_VALUES)
def test_strict_json_reads_the_same(value: Any) -> None:
    assert loads(json.dumps(value)) == value
    assert loads(json.dumps(value, indent=2, ensure_ascii=False)) == value


@settings(max_examples=300, deadline=None)
@given(value=st.dictionaries(st.from_regex(BARE_KEY, fullmatch=True), JSON_VALUES, max_size=4))
def test_bare_keys_read_as_quoted_ones(value: dict[str, Any]) -> None:
    text = "{" + ", ".join(f"{key}: {json.dumps(item)}" for key, item in value.items()) + "}"
    assert loads(text) == value


@settings(max_examples=500, deadline=None)
@given(text=st.lists(FRAGMENTS, max_size=30).map("".join) | st.text(max_size=40))
def test_any_text_is_read_or_refused(text: str) -> None:
    try:
        loads(text)
    except RelaxedJsonError as exc:
        assert 0 <= exc.pos <= len(text)
    try:
        parse_query([("_filter", "{" + text)])
    except BadRequest as exc:
        assert str(exc).startswith("_filter: ")
