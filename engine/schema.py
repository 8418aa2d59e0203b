"""The execution document's one schema: its fields in the seed page's order and the fields of
a phase (as the models of `engine.document` name and describe them), the fields that hold
timestamps, and the field that holds free-form JSON (`data`).

The store orders documents by it (`engine.store.base.canonical`), CSV's columns follow it
(`api.listing`), and the query language checks every field a request names against it
(`engine.query.fields.check_document_field`): a filter, `_sort`, `_project`, `_distinct`,
`_fieldinfo` or `_aggregate` naming a field it does not hold is a 400 that lists them; and
the fields whose values form a closed set (`CLOSED_FIELDS`, the sets of `engine.domain`), where
a filter's value outside the set is a 400 that lists the set
(`engine.query.values.check_closed_values`).
"""

from __future__ import annotations

from procexec.engine.document import Execution, Phase, field_names
from procexec.engine.domain import PHASE_STATUSES, STATUSES, TRIGGERS

#: the execution document's fields in the seed page's order (`engine.document.Execution`)
DOCUMENT_FIELDS = field_names(Execution)
#: the fields of each element of `phases`, in the seed page's order
PHASE_FIELDS = field_names(Phase)
#: the field whose value is free-form JSON: any path under it names a field
FREE_FIELD = "data"
#: the array of sub-documents, and the array of strings inside each of them
PHASES_FIELD = "phases"
LOG_FIELD = "log"
#: fields that hold timestamps; their filter values are dates or datetimes
DATE_FIELDS = frozenset({"start", "end", "phases.start", "phases.end"})
#: the document's top-level fields that hold one value (not an array, not free-form JSON)
SCALAR_FIELDS = tuple(name for name in DOCUMENT_FIELDS if name not in (PHASES_FIELD, FREE_FIELD))
#: the fields whose values form a closed set, by path (through `phases`, without a position),
#: and the values the platform writes there: a filter's value on them must be one of these
CLOSED_FIELDS: dict[str, tuple[str, ...]] = {
    "trigger": TRIGGERS,
    "status": STATUSES,
    f"{PHASES_FIELD}.status": PHASE_STATUSES,
}
