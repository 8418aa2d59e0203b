"""The `tokens` collection: API token records (`engine.store.credentials`), one document each,
`_id` the token's hash. Fields added since the first version are absent from earlier tokens'
documents, which read as no expiry, not revoked, no limits: nothing to migrate."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from procexec.engine.store.credentials import TokenRecord, names_of


def _record(row: Mapping[str, Any]) -> TokenRecord:
    return TokenRecord(
        row["_id"], row["user"], row["scope"], row["created"], row.get("expires"),
        row.get("revoked"), names_of(row.get("environments")), names_of(row.get("processes")),
    )  # fmt: skip


def add_token(tokens: Any, record: TokenRecord) -> None:
    doc: dict[str, Any] = {
        "_id": record.token_hash,
        "user": record.user,
        "scope": record.scope,
        "created": record.created,
    }
    optional = {
        "expires": record.expires,
        "revoked": record.revoked,
        "environments": list(record.environments),
        "processes": list(record.processes),
    }
    doc.update((key, value) for key, value in optional.items() if value)
    tokens.insert_one(doc)


def find_token(tokens: Any, token_hash: str) -> TokenRecord | None:
    row = tokens.find_one({"_id": token_hash})
    return None if row is None else _record(row)


def token_records(tokens: Any) -> list[TokenRecord]:
    return [_record(row) for row in tokens.find({}).sort([("created", 1), ("_id", 1)])]


def revoke_token(tokens: Any, token_hash: str, when: str) -> bool:
    selector = {"_id": token_hash, "revoked": None}  # None matches a missing field too
    done = tokens.update_one(selector, {"$set": {"revoked": when}})
    return bool(done.modified_count)
