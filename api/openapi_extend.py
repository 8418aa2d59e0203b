"""Changes to the app's OpenAPI description, made once, when it is first asked for (FastAPI
keeps the description as `app.openapi_schema`; each change is made to it in place)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

#: a change to the description: `(app, description)`, in place
Change = Callable[[FastAPI, dict[str, Any]], None]


def extend(app: FastAPI, change: Change) -> None:
    """Make `change` to the description once it is built (after the changes installed before)."""
    describe = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = describe()
        change(app, schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
