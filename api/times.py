"""The times the API takes in a body or a query (a backfill's range, the audit trail's `since`):
ISO 8601, as the description's pattern says and the routes check."""

from __future__ import annotations

import re

from procexec.api.errors import ApiError
from procexec.engine.errors import excerpt

#: a date, or a date and time to the minute, second or microsecond, with `Z` or an offset
#: `+hh:mm` (without one, UTC)
ISO_TIME = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]{1,6})?)?(Z|[+-][0-9]{2}:[0-9]{2})?)?$"
)
_ISO_TIME = re.compile(ISO_TIME.removesuffix("$") + r"\Z")


def check_time(name: str, value: str) -> None:
    """A 400 naming `name` unless `value` has the form of `ISO_TIME` (whether it is a time that
    exists, the engine says)."""
    if not _ISO_TIME.match(value):
        raise ApiError(
            400, f"{name}: '{excerpt(value)}' is not an ISO 8601 time, such as 2021-07-01T00:00:00Z"
        )
