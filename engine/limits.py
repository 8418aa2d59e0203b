"""How much one list call may ask for."""

#: documents a page holds unless `_limit` says otherwise
DEFAULT_LIMIT = 100
#: the largest `_limit`
MAX_LIMIT = 10_000
#: most values one `_distinct` answers with, buckets one `_fieldinfo`, rows one `_aggregate`
MAX_DISTINCT = 10_000
