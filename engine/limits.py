"""How much one list call may ask for."""

#: documents a page holds unless `_limit` says otherwise
DEFAULT_LIMIT = 100
#: the largest `_limit`
MAX_LIMIT = 10_000
#: most values one `_distinct` answers with, buckets one `_fieldinfo`, rows one `_aggregate`
MAX_DISTINCT = 10_000
#: most fields one `_project` names, and keys one `_sort`
MAX_PROJECT_FIELDS = 100
MAX_SORT_KEYS = 100
#: most values one `in()`, `$in` or `$nin` lists
MAX_IN_VALUES = 1000
