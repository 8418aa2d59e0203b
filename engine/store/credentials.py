"""API tokens as a store keeps them (`TokenRecord`), and what every store does with them
(`TokenStore`, a part of `ExecutionStore`).

A token is kept as the SHA-256 hash of its text, never the text. The fields added since the
first version (`expires`, `revoked`, `environments`, `processes`) are empty in the records of
tokens made before them: such a token never expires and has no limits, its scope as it was.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Sequence
from dataclasses import dataclass

#: how many hex digits of a token's hash name it in `procexec token list` and `revoke`
ID_LENGTH = 12


@dataclass(frozen=True)
class TokenRecord:
    """An API token as stored: only its hash is kept."""

    token_hash: str
    user: str
    scope: str
    created: str
    #: when it stops working (ISO UTC, `iso_ms`); None: never
    expires: str | None = None
    #: when it was revoked (ISO UTC); None: it was not
    revoked: str | None = None
    #: the environments it may read and run in; empty: any
    environments: tuple[str, ...] = ()
    #: the processes it may read and run; empty: any
    processes: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        """Its public name: the start of its hash (which tells nothing of the token)."""
        return self.token_hash[:ID_LENGTH]


def names_json(names: Sequence[str]) -> str | None:
    """A list of limits as a store column holds it (JSON), None when empty."""
    return json.dumps(list(names)) if names else None


def names_of(raw: str | Sequence[str] | None) -> tuple[str, ...]:
    """A list of limits read back from a store (a JSON text, a list, or nothing)."""
    if not raw:
        return ()
    if isinstance(raw, str):
        raw = json.loads(raw)
    return tuple(str(name) for name in raw or ())


class TokenStore(abc.ABC):
    """Where API tokens live."""

    @abc.abstractmethod
    def add_token(self, record: TokenRecord) -> None:
        """Store a new API token record."""

    @abc.abstractmethod
    def find_token(self, token_hash: str) -> TokenRecord | None:
        """The token record of this hash (revoked or expired too), or None."""

    @abc.abstractmethod
    def token_records(self) -> list[TokenRecord]:
        """Every token record, oldest first."""

    @abc.abstractmethod
    def revoke_token(self, token_hash: str, when: str) -> bool:
        """Mark the token of this hash revoked at `when` (ISO UTC); False when there is no
        such token or it was revoked already (its first revocation time is kept)."""
