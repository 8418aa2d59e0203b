"""The trigger's body in the OpenAPI description, one form for each process: its name, and its
parameters as the process declares them (`Process.params`, or its plain defaults), each process's
schema a component (`<NAME>.parameters`, the models it uses beside it as `<NAME>.<Model>`),
each form described by its process's description, phases and schedule. A
body naming no known process keeps the general form, and is answered 404.

Built when the description is first asked for, from the processes the app knows then.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from fastapi import FastAPI

from procexec.api import openapi_extend
from procexec.api.trigger import TRIGGER_SCHEMA
from procexec.engine.process import Process, ProcessRegistry


def install(app: FastAPI, paths: list[str]) -> None:
    """Describe the trigger at each of `paths` (`POST`) with each process's parameters."""

    def describe_bodies(app: FastAPI, schema: dict[str, Any]) -> None:
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        body = trigger_forms(app.state.procexec.registry, schemas)
        for path in paths:
            content = schema["paths"][path]["post"]["requestBody"]["content"]
            content["application/json"]["schema"] = body

    openapi_extend.extend(app, describe_bodies)


def component(process: str) -> str:
    """The name of a process's parameters among the description's schemas."""
    return f"{process}.parameters"


def catalogue_entry(process: Process) -> str:
    """What /docs tells of a process beside its parameters, as the process list gives it: its
    description, phases and schedule (or the runs the service makes of it)."""
    made = (
        [f"defined schedule `{process.schedule}` ({process.timezone})"] if process.schedule else []
    )
    if process.subscriptions:
        made.append("runs when " + ", ".join(f"`{p}`" for p in process.subscriptions) + " load")
    if process.follows:
        made.append("follows " + ", ".join(sorted(process.follows)))
    phases = ", ".join(phase.name for phase in process.phases)
    told = "; ".join([f"Phases: {phases}", *(made or ["no schedule"])])
    return f"{process.description}. {told}." if process.description else f"{told}."


def trigger_forms(registry: ProcessRegistry, schemas: dict[str, Any]) -> dict[str, Any]:
    """The trigger body's schema: one form for each process of `registry` (whose parameters'
    schemas are added to `schemas`), and the general form for any other name."""
    forms = []
    names = []
    for process in registry:
        prefix = f"#/components/schemas/{process.name}."
        described = process.parameters_model.schema(ref_template=prefix + "{model}")
        for name, nested in described.pop("$defs", {}).items():
            schemas[f"{process.name}.{name}"] = nested
        # shown by /docs under its title: the process's, not the model's class name
        schemas[component(process.name)] = {**described, "title": component(process.name)}
        form = copy.deepcopy(TRIGGER_SCHEMA)
        form["title"] = f"Run {process.name}"
        form["description"] = catalogue_entry(process)
        reference = {"$ref": f"#/components/schemas/{component(process.name)}"}
        form["properties"]["name"] = {"const": process.name, "description": process.description}
        form["properties"]["body"] = {**reference, "description": "its parameters"}
        form["properties"]["input"] = {**reference, "description": "an alias of `body`"}
        forms.append(form)
        names.append(re.escape(process.name))
    other = copy.deepcopy(TRIGGER_SCHEMA)
    other["title"] = "Run another process (404: unknown)"
    if names:  # the name is read without the spaces around it
        other["properties"]["name"]["not"] = {"pattern": rf"^\s*({'|'.join(names)})\s*$"}
    return {"oneOf": [*forms, other]}
