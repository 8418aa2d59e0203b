"""The one line a refused setting is told in (`engine.settings`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError


def validation_message(
    fields: Mapping[str, Any], env_name: Callable[[str], str], error: ValidationError
) -> str:
    """One line for the errors of a validation: a check's own message (which names the
    variable and the value), or pydantic's, after the variable (`env_name` of one of the
    `fields`) and the value."""
    lines = []
    for found in error.errors(include_url=False):
        cause = found.get("ctx", {}).get("error")
        if isinstance(cause, ValueError):
            lines.append(str(cause))
            continue
        field = str(found["loc"][0]) if found["loc"] else ""
        variable = env_name(field) if field in fields else field
        lines.append(f"{variable}: '{found['input']}': {found['msg']}")
    return "; ".join(lines)
