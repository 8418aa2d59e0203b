"""Request bodies read as JSON: whatever the client sends is a value or a 400 naming what was
wrong with it, never an error past the parse (an answer that cannot be rendered, a run stored
and dispatched before its answer fails)."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from procexec.api.errors import ApiError
from procexec.engine.query.json_input import strings_in

#: a lone surrogate: a JSON string may escape one (`"\ud800"`); no UTF-8 text can hold it
_SURROGATE = re.compile("[\ud800-\udfff]")


def described(schema: dict[str, Any]) -> dict[str, Any]:
    """A required JSON body of `schema` in the OpenAPI description (a route's `openapi_extra=`):
    the routes read their bodies with `json_body`, so FastAPI cannot describe them."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def json_body(raw: bytes) -> Any:
    """The body's JSON value; a 400 when it is malformed, nested too deeply, holds an integer
    of more digits than Python converts, or a lone surrogate."""
    try:
        payload = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"request body: malformed JSON: {exc}") from None
    except ValueError:  # an integer past `sys.get_int_max_str_digits()`
        limit = sys.get_int_max_str_digits()
        raise ApiError(400, f"request body: a number of more than {limit} digits") from None
    except RecursionError:
        raise ApiError(400, "request body: malformed JSON: nested too deeply") from None
    surrogate = _lone_surrogate(payload)
    if surrogate is not None:
        raise ApiError(
            400, f"request body: '\\u{ord(surrogate):04x}' is a lone surrogate, not a character"
        )
    return payload


def _lone_surrogate(value: Any) -> str | None:
    """The first lone surrogate in a string, key or value of `value`."""
    for item in strings_in(value):
        match = _SURROGATE.search(item)
        if match:
            return match.group()
    return None
