"""The rerun's `from` in the OpenAPI description: `start`, or one of the phases of the
processes the app knows (a name outside them is answered 400). Built when the description is
first asked for, as the trigger's body is (`api.trigger_schema`)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from procexec.api import openapi_extend
from procexec.engine.process import ProcessRegistry
from procexec.engine.rerun import START


def install(app: FastAPI, paths: list[str]) -> None:
    """Describe `from` of the rerun at each of `paths` (`POST`) with the phases it takes."""

    def describe_from(app: FastAPI, schema: dict[str, Any]) -> None:
        taken = choices(app.state.procexec.registry)
        for path in paths:
            for parameter in schema["paths"][path]["post"].get("parameters", []):
                if parameter["name"] == "from" and parameter["in"] == "query":
                    parameter["schema"] = {"type": "string", "enum": taken}

    openapi_extend.extend(app, describe_from)


def choices(registry: ProcessRegistry) -> list[str]:
    """What `from` takes: `start`, and every phase of `registry`'s processes."""
    phases = {phase.name for process in registry for phase in process.phases}
    return [START, *sorted(phases)]
