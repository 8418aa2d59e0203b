"""The execution document in the OpenAPI description: the models of `engine.document` as
components (`Execution`, `Phase`, `DataUpdates`, and the closed sets `Status`, `PhaseStatus`,
`Trigger`), and the answers of the calls that return documents, declared through them.

Only the description: the calls still answer the JSON the store holds, never a model
serialised per request.

The schemas are the models' with `_project` allowed for (`json_schemas(projected=True)`): a
read may pick any fields, so `Execution` requires `_id` alone, and its description says which
fields a whole document always holds. The tests hold whole documents to the models' own
required fields (tests/documents.py).
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI

from procexec.api import openapi_extend
from procexec.engine.document import json_schemas

EXECUTION: dict[str, Any] = {"$ref": "#/components/schemas/Execution"}
#: one execution as a read of it answers: `parameters` too where `_params=true` asked for them
EXECUTION_READ: dict[str, Any] = {"$ref": "#/components/schemas/ExecutionRead"}
#: a page of the list call
EXECUTIONS: dict[str, Any] = {
    "type": "array",
    "items": EXECUTION,
    "description": "The executions of the page, newest `start` first (by default)",
}
#: what the list call answers in JSON: a page of executions, or, asked for with `_distinct`,
#: `_fieldinfo` or `_aggregate`, the values, buckets or results that answer those
LIST_JSON: dict[str, Any] = {
    "anyOf": [
        EXECUTIONS,
        {
            "type": "array",
            "description": "With `_distinct`: the field's distinct values; with `_fieldinfo`: "
            "`{_id, count}` buckets; with `_aggregate`: the pipeline's results",
        },
    ]
}
#: the count of every execution the list's filters match, past `_limit` and `_skip`
TOTAL_HEADER = {
    "x-total-count": {
        "description": "How many executions (values, buckets, results) match in all",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    }
}
#: the other formats of a read, as `Accept` asks (`api.listing`): text, not described further
OTHER_FORMATS = {
    "text/csv": {"schema": {"type": "string"}},
    "application/xml": {"schema": {"type": "string"}},
}


def _ok(description: str, schema: dict[str, Any], **extra: Any) -> dict[int | str, Any]:
    return {
        200: {
            "description": description,
            "content": {"application/json": {"schema": schema}, **OTHER_FORMATS},
            **extra,
        }
    }


#: the list call (`v1`, and `v1/private` … through `v1/{key}`)
LIST_RESPONSES = _ok("A page of executions", LIST_JSON, headers=TOTAL_HEADER)
#: `v1/{key}`: one execution by id, or a list under a source segment (`private`, `all`, …)
GET_OR_LIST_RESPONSES = _ok(
    "One execution (`_project` picks its fields); under `private`, `public` or `all`, a page "
    "of them as the list call answers",
    {"anyOf": [EXECUTION_READ, *LIST_JSON["anyOf"]]},
)
#: one execution by id
GET_RESPONSES = _ok(
    "The execution (`_project` picks its fields; `_params=true` adds `parameters`)",
    EXECUTION_READ,
)
#: an answer that is one whole execution, JSON only (the trigger's 202, the cancel's 200)
ONE_EXECUTION = {"content": {"application/json": {"schema": EXECUTION}}}


def install(app: FastAPI) -> None:
    """Add the document's schemas to the app's OpenAPI description (`components`)."""
    openapi_extend.extend(app, _add_document_schemas)


def _add_document_schemas(app: FastAPI, schema: dict[str, Any]) -> None:
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, described in json_schemas(projected=True).items():
        assert name not in schemas, f"two schemas named {name}"
        schemas[name] = described
    read = copy.deepcopy(schemas["Execution"])
    read["description"] = (
        "One execution as a read of it answers: the document, with `parameters` where "
        "`_params=true` asked for them"
    )
    read["properties"]["parameters"] = {
        "type": "object",
        "description": "The parameters the run was triggered with, secrets masked (only with "
        "`_params=true`)",
    }
    schemas["ExecutionRead"] = read
