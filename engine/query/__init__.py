"""The list call's query language, parsed into one backend-neutral `Query`.

Each store compiles a `Query` itself (`engine.store.sqlite`, `engine.store.mongo_query`),
so the same request gives the same rows on both. The language (the platform's REST
conventions, described for users in docs/api.md):

- `field=value` filters, with the value functions `range`, `gt`, `gte`, `lt`, `lte`, `in`,
  `ne`, `regex`; several filters are ANDed;
- `_filter`: a boolean expression over the same conditions (`(status=failed or
  status=running) and not name=DEMO`) or a MongoDB-style JSON filter restricted to
  `SAFE_OPERATORS`, strict or relaxed (`{_id:/AB/i}`: `engine.relaxed_json`);
- `_search`: free text (`engine.search`); `_sort`, `_project`, `_limit`, `_skip`, `_distinct`;
- `_fieldinfo` (`field_buckets`) and `_aggregate` (a safe pipeline: `pipeline`), which
  answer with counts instead of documents.

Every malformed parameter raises `BadRequest` with a message that starts with its name.

One module for each part, each importing only those listed before it:

- `tree`: the filter tree (`Condition`, `And`, `Or`, `Not`) and the bounds on its size;
- `fields`: which names are fields, and the keys a list is sorted by;
- `regex`: regular expressions, checked and matched by RE2 (linear time);
- `values`: the value functions of `field=value`;
- `expression`: `_filter` as a boolean expression;
- `json_input`: reading a parameter's JSON, strict or relaxed;
- `json_filter`: `_filter` as a MongoDB-style JSON filter;
- `pipeline`: `_aggregate`, a safe subset of MongoDB's aggregation pipeline;
- `params`: the URL parameters read into a `Query` (`parse_query`), and those of a call that
  reads one execution (`parse_document_params`);
- `documents`: how documents' values compare, count and project, for the stores that work in
  Python.

The names other modules use are importable from here.
"""

from procexec.engine.query.documents import (
    distinct_key,
    field_buckets,
    project_document,
    sorted_distinct,
    too_many_values,
    values_at,
)
from procexec.engine.query.json_filter import SAFE_OPERATORS
from procexec.engine.query.params import Query, parse_document_params, parse_query
from procexec.engine.query.tree import And, Condition, Node, Not, Or

__all__ = [
    "SAFE_OPERATORS",
    "And",
    "Condition",
    "Node",
    "Not",
    "Or",
    "Query",
    "distinct_key",
    "field_buckets",
    "parse_document_params",
    "parse_query",
    "project_document",
    "sorted_distinct",
    "too_many_values",
    "values_at",
]
