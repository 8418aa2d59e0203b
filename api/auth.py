"""Who is calling: a Bearer token, or the platform's API-key forms carrying a procexec token."""

from __future__ import annotations

import base64
import binascii

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from procexec.api.errors import ApiError
from procexec.engine.domain import Scope
from procexec.engine.store.base import TokenRecord
from procexec.engine.tokens import TokenCache, allows, allows_environment, allows_process

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="procexec"'}


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, _CHALLENGE)


def _credentials(request: Request) -> tuple[str | None, str]:
    """The (claimed user, token) a request carries; raises 401 when it carries none."""
    header = request.headers.get("authorization", "").strip()
    if header:
        kind, _, value = header.partition(" ")
        value = value.strip()
        if kind.lower() == "bearer" and value:
            return None, value
        if kind.lower() == "basic" and value:
            try:
                decoded = base64.b64decode(value, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise _unauthorized("Authorization: Basic credentials are not base64") from None
            user, sep, key = decoded.partition(":")
            if not sep or not user or not key:
                raise _unauthorized("Authorization: Basic credentials must be user:key")
            return user, key
        raise _unauthorized("Authorization: expected 'Bearer <token>' or 'Basic <user:key>'")
    email = request.headers.get("x-odsl-email")
    api_key = request.headers.get("x-odsl-key")
    if email and api_key:
        return email, api_key
    if email or api_key:
        raise _unauthorized("x-odsl-email and x-odsl-key must be sent together")
    raise _unauthorized("missing credentials: send 'Authorization: Bearer <token>'")


def authenticate(request: Request, tokens: TokenCache, needed: Scope) -> TokenRecord:
    """The token record of the caller, if it may do what `needed` names."""
    claimed_user, token = _credentials(request)
    return _checked(tokens.verify(token), claimed_user, needed)


async def caller(request: Request, tokens: TokenCache, needed: Scope) -> TokenRecord:
    """As `authenticate`, for the event loop: a token the cache trusts is taken there (no
    thread, no store); any other is verified against the store in a worker thread (a store
    that does not answer must not hold the loop)."""
    claimed_user, token = _credentials(request)
    record = tokens.trusted(token)
    if record is None:
        record = await run_in_threadpool(tokens.verify, token)
    return _checked(record, claimed_user, needed)


def _checked(record: TokenRecord | None, claimed_user: str | None, needed: Scope) -> TokenRecord:
    """`record` if it is a valid token's, of `claimed_user` (when one is claimed), allowing
    `needed`; a 401 or 403 otherwise."""
    if record is None:
        raise _unauthorized("invalid token")
    if claimed_user is not None and claimed_user != record.user:
        raise _unauthorized(f"the key does not belong to user '{claimed_user}'")
    if not allows(record, needed):
        raise ApiError(403, f"token scope '{record.scope}' does not allow '{needed.value}'")
    return record


def _excerpt(text: str, size: int = 64) -> str:
    return text if len(text) <= size else text[:size] + "…"


def permit(record: TokenRecord, environment: str | None = None, process: str | None = None) -> None:
    """403 unless the token's limits (`TokenRecord.environments`, `.processes`) allow
    `environment` and `process` (those given)."""
    if environment is not None and not allows_environment(record, environment):
        raise ApiError(
            403,
            f"token limited to environment(s) {', '.join(record.environments)}: "
            f"not '{_excerpt(environment)}' (x-odsl-environment)",
        )
    if process is not None and not allows_process(record, process):
        raise ApiError(
            403,
            f"token limited to process(es) {', '.join(record.processes)}: "
            f"not '{_excerpt(process)}'",
        )
