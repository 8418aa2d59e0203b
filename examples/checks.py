"""Checks of the bundled processes' parameters, shared by their `check` and their phases."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from procexec.engine.errors import excerpt


def number(params: Mapping[str, Any], key: str, low: float, high: float) -> float:
    """`params[key]` (None or absent: `low`) as a number from `low` to `high`; a `ValueError`
    naming the parameter otherwise."""
    value = params.get(key)
    if value is None:
        return low
    try:
        if isinstance(value, bool):
            raise TypeError
        found = float(value)
    except (TypeError, ValueError):
        found = math.nan
    if not low <= found <= high:  # NaN and infinities too
        got = excerpt(repr(value), 40)
        raise ValueError(f"{key}: expected a number from {low:g} to {high:g}, got {got}")
    return found
