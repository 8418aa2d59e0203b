"""A read's query as it comes: the URL's query string (at most `MAX_QUERY_STRING_BYTES`) and a
form body, read into its parameters (`query_items`), on the event loop when short and in a worker
thread when longer than `INLINE_QUERY_BYTES`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar
from urllib.parse import parse_qsl

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from procexec.api.errors import ApiError
from procexec.api.limits import MAX_QUERY_STRING_BYTES

T = TypeVar("T")

#: a GET may carry its query in a body of this type
FORM_TYPE = "application/x-www-form-urlencoded"
#: the parameters of a list call, in order
QueryItems = tuple[tuple[str, str], ...]
#: queries of at most this many characters are remembered once parsed
CACHED_QUERY_CHARS = 4096
#: a list call whose query (the URL's and a form body's, in bytes) is longer goes straight to a
#: worker thread: reading and checking it costs more than the event loop may spend on a call
INLINE_QUERY_BYTES = 2048


def cached(size: Callable[[Any], int]) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """The function, remembering its last thousand answers when its first argument's `size`
    is small: dashboards and scripts send the same few queries again and again, and parsing
    one (its URL, then its filters) costs about as much as answering it from an index."""

    def wrap(function: Callable[..., T]) -> Callable[..., T]:
        remembered = functools.lru_cache(maxsize=1024)(function)

        def call(key: Any, *args: Any) -> T:
            if size(key) <= CACHED_QUERY_CHARS:
                return remembered(key, *args)
            return function(key, *args)

        return call

    return wrap


@cached(len)
def url_items(query_string: bytes) -> QueryItems:
    """A URL's query parameters, read as Starlette reads them."""
    return tuple(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))


class QueryParts(NamedTuple):
    """A query as it came: the URL's query string, and a form body (empty when none)."""

    url: bytes
    form: bytes


def items_of(url: bytes, form: bytes) -> QueryItems:
    """The parameters of a query's parts: the URL's, then the form body's; a body that is not
    UTF-8 is a 400."""
    items = url_items(url)
    if not form:
        return items
    try:
        text = form.decode()
    except UnicodeDecodeError:
        raise ApiError(400, "request body: the form query is not UTF-8") from None
    return (*items, *parse_qsl(text, keep_blank_values=True))


async def query_parts(request: Request) -> QueryParts:
    """The query's URL part, at most `MAX_QUERY_STRING_BYTES` (else a 400 naming the limit),
    and its form body: a GET may carry its query in an `application/x-www-form-urlencoded`
    body; a body of another type is not read."""
    url = request.scope["query_string"]
    if len(url) > MAX_QUERY_STRING_BYTES:
        raise ApiError(
            400,
            f"query string: {len(url)} bytes, at most {MAX_QUERY_STRING_BYTES} allowed "
            "(a longer query travels in a form body)",
        )
    content_type = request.headers.get("content-type")
    if content_type is None or content_type.partition(";")[0].strip().lower() != FORM_TYPE:
        return QueryParts(url, b"")
    # at most `api.limits.MAX_BODY_BYTES`, its sender authenticated
    return QueryParts(url, await request.body())


async def query_items(request: Request) -> QueryItems:
    """The list call's parameters: the URL's, then those of a form body.

    The platform lets a GET whose URL would pass 2,048 characters carry its query in an
    `application/x-www-form-urlencoded` body; both parts count, as if written in one URL. A
    query longer than `INLINE_QUERY_BYTES` is read in a worker thread.
    """
    parts = await query_parts(request)
    if len(parts.url) + len(parts.form) > INLINE_QUERY_BYTES:
        return await run_in_threadpool(items_of, *parts)
    return items_of(*parts)
