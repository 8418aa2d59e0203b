"""What `/docs` needs of the OpenAPI description to be used, not only read: the ways to log in
(`api.auth`) as security schemes, so that Swagger UI's Authorize sends them with "Try it out",
and the list call's options declared as query parameters, each with its description.

Security: a Bearer token; `Authorization: Basic base64(user:token)`; the headers
`x-odsl-email` and `x-odsl-key` together. Every operation that answers 401 takes any one of
them; the others (`/healthz`, `/readyz`, build information) take none.

The list call (`v1`, and `v1/{key}` under a source segment) takes any field of the execution
document as a filter, which no fixed list of parameters can declare: its options are declared
(`LIST_PARAMETERS`, their types and bounds those `engine.query` enforces), and its description
says that any other parameter is a filter. `v1/{key}` and `v1/{source}/{execution_id}` also
declare `_params` (`api.run_parameters`).
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI

from procexec.api import openapi_extend
from procexec.engine.limits import MAX_LIMIT

#: the forms of `api.auth`, as OpenAPI security schemes
SECURITY_SCHEMES: dict[str, Any] = {
    "bearerToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "A procexec token: `Authorization: Bearer <token>`",
    },
    "basicUserToken": {
        "type": "http",
        "scheme": "basic",
        "description": "The platform's form: the token's user, and the token as password",
    },
    "odslEmail": {
        "type": "apiKey",
        "in": "header",
        "name": "x-odsl-email",
        "description": "The platform's form: the token's user (with `x-odsl-key`)",
    },
    "odslKey": {
        "type": "apiKey",
        "in": "header",
        "name": "x-odsl-key",
        "description": "The platform's form: the token (with `x-odsl-email`)",
    },
}
#: any one of the forms: the two headers go together
SECURITY: list[dict[str, list[str]]] = [
    {"bearerToken": []},
    {"basicUserToken": []},
    {"odslEmail": [], "odslKey": []},
]


def _query(name: str, description: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
        **extra,
    }


#: `_project`, on the list and on a read of one execution
PROJECT_PARAMETER = _query(
    "_project",
    'The fields to answer: `name,status` or `{"name":1}`; `-phases,-data` drops fields; '
    "`_id` always comes back",
    {"type": "string"},
)

#: the list call's options (`engine.query.params.OPTIONS`), with the platform page's examples
#: in their descriptions (an `example` is filled in by "Try it out", and most of them do not go
#: together)
LIST_PARAMETERS: list[dict[str, Any]] = [
    _query(
        "_filter",
        "A boolean expression over field conditions (`and`, `or`, `not`, parentheses; `=`, "
        "`!=`, `>`, `>=`, `<`, `<=`), or a MongoDB-style JSON filter (relaxed: bare keys, "
        "`/regex/flags`): `(status=failed or status=running) and name=ECB_FX`, "
        '`{name:/^ecb/i, status:"success"}`',
        {"type": "string"},
    ),
    _query(
        "_search",
        "Free text over the id, name, message, reason and log lines: a space is AND, `a|b` "
        'OR, a leading `-` NOT, `"two words"` a phrase: `ECB_FX completed -"info extract"`',
        {"type": "string"},
    ),
    _query(
        "_sort",
        'The order, top-level fields: `-start,name` or `{"start":-1,"name":1}` (default `-start`)',
        {"type": "string"},
    ),
    PROJECT_PARAMETER,
    _query(
        "_limit",
        f"How many executions at most (default 100, at most {MAX_LIMIT}; `-1` means the maximum)",
        {"type": "integer", "minimum": -1, "maximum": MAX_LIMIT, "default": 100},
    ),
    _query(
        "_skip",
        "How many executions to skip before the page",
        {"type": "integer", "minimum": 0, "maximum": 10**9, "default": 0},
    ),
    _query(
        "_distinct",
        "Answer the sorted distinct values of this field (arrays unwound), not executions: "
        "`_distinct=name`",
        {"type": "string"},
    ),
    _query(
        "_fieldinfo",
        "Answer buckets `{_id, count, filter}` of this field's values among the selected "
        "executions, most executions first (a bucket's `filter`, given as `_filter`, selects "
        "exactly `count`); null and missing values left out; not with `_project` or `_sort`: "
        "`_fieldinfo=status`",
        {"type": "string"},
    ),
    _query(
        "_aggregate",
        "Answer a MongoDB aggregation pipeline's results (a JSON array of stages: `$match`, "
        "`$sort`, `$skip`, `$limit`, one `$group` or `$count`, then `$match`, `$sort`, "
        "`$skip`, `$limit`, `$project`, `$count`) over the selected executions; not with "
        '`_project`: `[{"$group":{"_id":"$status","count":{"$sum":1}}}]`',
        {"type": "string"},
    ),
]
#: what the list call's description adds: the filters no parameter list can declare
FILTERS_TEXT = (
    "\n\nAny other query parameter filters on a field of the execution document: "
    "`field=value` matches exactly (`name=ECB_FX`, `status=failed`); dotted paths reach into "
    "phases and data (`phases.status=failed`); value functions `range(a,b)`, `gt`, `gte`, "
    "`lt`, `lte`, `in(a,b,…)`, `ne(x)`, `regex(…)`; `null` is a missing value. Several "
    "filters are ANDed. A name that is neither an option nor a field is a 400."
)


#: `_params` on a read of one execution (`engine.shown_parameters`)
PARAMS_PARAMETER = _query(
    "_params",
    "`true`: the answer also holds `parameters`, the parameters the run was triggered with "
    "(secrets masked)",
    {"type": "boolean", "default": False},
)


#: the list call's options the all-runs stream (`GET v1/events`) takes
STREAM_FILTERS = ("_filter", "_search")


def install(app: FastAPI, bases: list[str]) -> None:
    """Declare the security schemes on every operation that answers 401, and the list call's
    parameters on `GET <base>/v1` and `GET <base>/v1/{key}` of each of `bases`."""

    def change(app: FastAPI, schema: dict[str, Any]) -> None:
        components = schema.setdefault("components", {})
        components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
        for operations in schema["paths"].values():
            for operation in operations.values():
                if isinstance(operation, dict) and "responses" in operation:
                    answers_401 = "401" in operation["responses"]
                    operation["security"] = copy.deepcopy(SECURITY) if answers_401 else []
        for base in bases:
            listing = schema["paths"][f"{base}/v1"]["get"]
            _declare(listing, LIST_PARAMETERS)
            listing["description"] = listing.get("description", "") + FILTERS_TEXT
            either = schema["paths"][f"{base}/v1/{{key}}"]["get"]
            _declare(either, [*LIST_PARAMETERS, PARAMS_PARAMETER])
            either["description"] = (
                either.get("description", "")
                + FILTERS_TEXT
                + " On an id, only `_project` and `_params` apply; on a source, not `_params`."
            )
            one = schema["paths"][f"{base}/v1/{{source}}/{{execution_id}}"]["get"]
            _declare(one, [PROJECT_PARAMETER, PARAMS_PARAMETER])
            stream = schema["paths"].get(f"{base}/v1/events", {}).get("get")
            if stream is not None:  # the all-runs stream takes the list call's filters
                _declare(stream, [p for p in LIST_PARAMETERS if p["name"] in STREAM_FILTERS])

    openapi_extend.extend(app, change)


def _declare(operation: dict[str, Any], parameters: list[dict[str, Any]]) -> None:
    declared = operation.setdefault("parameters", [])
    known = {(parameter["name"], parameter["in"]) for parameter in declared}
    for parameter in parameters:
        if (parameter["name"], parameter["in"]) not in known:
            declared.append(copy.deepcopy(parameter))
