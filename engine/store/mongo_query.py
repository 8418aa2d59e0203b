"""The list call on MongoDB: a `Query` compiled to a filter document, `_search` on a text index.

`_search` matches words (`engine.search`), which MongoDB's own text tokenizer cuts otherwise
(it keeps `ECB_FX` whole, SQLite's FTS5 does not). So each document carries its searched
texts already cut into words, in the hidden `_meta.text` (`mirror`), kept in step by every
insert and update (`mirror_update`); the text index is built over those words. A search then
runs as two parts of one filter:

- `$text` with words that every match must hold (`text_cover`): the index finds the
  candidates;
- the exact search over `_meta.text` (`search_filter`): a phrase is a run of whole words.

A search with no word every match must hold (a lone NOT: `-failed`) has no `$text` part: it
runs as the exact part alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from procexec.engine.query import And, Condition, Node, Not, Or
from procexec.engine.query.pipeline import Count, Group, Limit, Match, Pipeline, Project, Skip, Sort
from procexec.engine.search import AllOf, AnyOf, NoneOf, SearchNode, Term, normalized

_MONGO_OPS = {"gt": "$gt", "gte": "$gte", "lt": "$lt", "lte": "$lte", "ne": "$ne", "in": "$in"}
#: matches no document (an always-false condition)
NOTHING: dict[str, Any] = {"_id": {"$in": []}}

#: where the searched words of a document live, and the fields of the text index over them
TEXT = "_meta.text"
TEXT_FIELDS = ("id", "name", "message", "reason", "phases.log")
TEXT_INDEX = "search_text"


def compile_filter(node: Node) -> dict[str, Any]:
    """A `Query` filter tree as a MongoDB filter document."""
    if isinstance(node, Condition):
        value = node.value
        if node.op == "eq":
            return {node.field: value}
        if node.op == "regex":
            return {node.field: {"$regex": value}}
        if node.op == "exists":
            return {node.field: {"$exists": True}}
        if value is None and node.op in ("gte", "lte"):
            return {node.field: None}  # as SQLite: null is at least and at most null
        if value is None and node.op in ("gt", "lt"):
            return NOTHING
        if node.op == "in":
            value = list(value)
        return {node.field: {_MONGO_OPS[node.op]: value}}
    if isinstance(node, And):
        if not node.items:
            return {}
        return {"$and": [compile_filter(item) for item in node.items]}
    if isinstance(node, Or):
        return {"$or": [compile_filter(item) for item in node.items]}
    if isinstance(node, Not):
        return {"$nor": [compile_filter(node.item)]}
    raise TypeError(f"unknown query node {node!r}")


def compile_pipeline(pipeline: Pipeline) -> list[dict[str, Any]]:
    """An `_aggregate` pipeline as MongoDB's own stages (rebuilt from the checked stages, never
    the caller's text)."""
    stages: list[dict[str, Any]] = []
    for stage in pipeline.stages():
        if isinstance(stage, Match):
            stages.append({"$match": compile_filter(stage.where)})
        elif isinstance(stage, Sort):
            stages.append({"$sort": dict(stage.keys)})
        elif isinstance(stage, Skip):
            stages.append({"$skip": stage.count})
        elif isinstance(stage, Limit):
            stages.append({"$limit": stage.count})
        elif isinstance(stage, Count):
            stages.append({"$count": stage.name})
        elif isinstance(stage, Project):
            kept: dict[str, Any] = {name: 1 for name in stage.fields}
            stages.append({"$project": kept if "_id" in kept else {"_id": 0, **kept}})
        else:
            stages.append({"$group": _group(stage)})
    return stages


def _group(group: Group) -> dict[str, Any]:
    key: Any = None
    if isinstance(group.key, str):
        key = f"${group.key}"
    elif group.key is not None:
        key = {name: f"${path}" for name, path in group.key}
    spec: dict[str, Any] = {"_id": key}
    for acc in group.accumulators:
        argument = acc.constant if acc.field is None else f"${acc.field}"
        spec[acc.name] = {f"${acc.op}": argument}
    return spec


# --- the searched words of a document ------------------------------------------------------


def _text(value: Any) -> str:
    """A value as SQLite's JSON functions hand it to FTS5, so both backends search alike."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return "" if value is None else str(value)


def _lines(phase: Any) -> list[str]:
    if not isinstance(phase, Mapping) or "log" not in phase:
        return []
    log = phase["log"]
    items = log.values() if isinstance(log, Mapping) else log if isinstance(log, list) else [log]
    return [normalized(_text(line)) for line in items if line is not None]


def mirror(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The searched texts of a document, cut into words: `_meta.text`."""
    phases = doc.get("phases")
    return {
        "id": normalized(_text(doc.get("_id"))),
        "name": normalized(_text(doc.get("name"))),
        "message": normalized(_text(doc.get("message"))),
        "reason": normalized(_text(doc.get("reason"))),
        "phases": [{"log": _lines(phase)} for phase in phases] if isinstance(phases, list) else [],
    }


def mirror_update(
    sets: Mapping[str, Any] | None, pushes: Mapping[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The `$set` and `$push` (with `$each`) that keep `_meta.text` in step with a change."""
    mirrored_sets: dict[str, Any] = {}
    mirrored_pushes: dict[str, Any] = {}
    for path, value in (sets or {}).items():
        parts = path.split(".")
        if path in ("name", "message", "reason"):
            mirrored_sets[f"{TEXT}.{path}"] = normalized(_text(value))
        elif path == "phases":
            mirrored_sets[f"{TEXT}.phases"] = (
                [{"log": _lines(phase)} for phase in value] if isinstance(value, list) else []
            )
        elif parts[0] == "phases" and len(parts) == 2 and parts[1].isdigit():
            mirrored_sets[f"{TEXT}.{path}"] = {"log": _lines(value)}
        elif parts[0] == "phases" and len(parts) == 3 and parts[1].isdigit() and parts[2] == "log":
            mirrored_sets[f"{TEXT}.{path}"] = _lines({"log": value})
        elif (
            parts[0] == "phases"
            and len(parts) == 4
            and parts[1].isdigit()
            and parts[2] == "log"
            and parts[3].isdigit()
        ):
            mirrored_sets[f"{TEXT}.{path}"] = normalized(_text(value))
    for path, values in (pushes or {}).items():
        parts = path.split(".")
        if path == "phases":
            mirrored_pushes[f"{TEXT}.phases"] = {"$each": [{"log": _lines(p)} for p in values]}
        elif parts[0] == "phases" and len(parts) == 3 and parts[1].isdigit() and parts[2] == "log":
            mirrored_pushes[f"{TEXT}.{path}"] = {"$each": _lines({"log": list(values)})}
    return mirrored_sets, mirrored_pushes


# --- _search -------------------------------------------------------------------------------


def _term_pattern(term: Term) -> str:
    return re.escape(" " + " ".join(term.words) + " ")


def search_filter(node: SearchNode) -> dict[str, Any]:
    """The exact search, over the words in `_meta.text`: a term is a run of whole words."""
    if isinstance(node, Term):
        pattern = _term_pattern(node)
        return {"$or": [{f"{TEXT}.{field}": {"$regex": pattern}} for field in TEXT_FIELDS]}
    if isinstance(node, NoneOf):
        return {"$nor": [search_filter(node.item)]}
    key = "$and" if isinstance(node, AllOf) else "$or"
    assert isinstance(node, AllOf | AnyOf)
    return {key: [search_filter(item) for item in node.items]}


def text_cover(node: SearchNode) -> list[str] | None:
    """Words of which every match of the search holds at least one, or None (a lone NOT).

    They make a `$text` search (its words are ORed) that finds a superset of the matches
    through the text index.
    """
    if isinstance(node, Term):
        return [max(node.words, key=len)]
    if isinstance(node, NoneOf):
        return None
    covers = [text_cover(item) for item in node.items]
    if isinstance(node, AnyOf):
        if any(cover is None for cover in covers):
            return None
        return list(dict.fromkeys(word for cover in covers if cover for word in cover))
    known = [cover for cover in covers if cover is not None]
    return min(known, key=len) if known else None


def text_index_keys() -> list[tuple[str, str]]:
    return [(f"{TEXT}.{field}", "text") for field in TEXT_FIELDS]
