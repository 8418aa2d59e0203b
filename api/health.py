"""`GET /healthz` (the API process is up) and `GET /readyz` (what it needs answers), without a
token, for load balancers, orchestrators and `procexec standalone`'s operators.

`/readyz` asks each check (the store, the broker) at most once a second whoever calls, each
within `CHECK_TIMEOUT` seconds, so that an unauthenticated caller cannot make the service hammer
its store or broker, and a probe never hangs on one that does not answer. Under `procexec
standalone` it also reports the supervised worker and beat: a child that is down (between a
death and its restart) makes the service unready.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from procexec.api.errors import error_header
from procexec.engine.redact import mask_secrets

#: a readiness check: returns quietly when its part answers, raises (naming why) when not
Check = Callable[[], None]
#: the supervised children's state by name (`workers.supervisor.Supervisor.status`)
Children = Callable[[], dict[str, dict[str, Any]]]

#: seconds a check may take before it counts as not answering
CHECK_TIMEOUT = 3.0
#: seconds a report is served again before the checks are asked anew
CACHE_SECONDS = 1.0

router = APIRouter()


class Readiness:
    """The checks, asked together with a deadline, their report kept for `CACHE_SECONDS`."""

    def __init__(
        self,
        checks: Mapping[str, Check],
        children: Children | None = None,
        *,
        timeout: float = CHECK_TIMEOUT,
        cache_seconds: float = CACHE_SECONDS,
    ) -> None:
        self.checks = dict(checks)
        self.children = children
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._report: tuple[float, list[str], dict[str, Any]] | None = None
        #: each check's latest call: one still running past its deadline is waited for again,
        #: not called anew, so that a part that hangs holds one thread, not one a probe
        self._calls: dict[str, concurrent.futures.Future[None]] = {}

    def report(self) -> tuple[str | None, dict[str, Any]]:
        """(what is not ready, or None; the state of every part).

        The checks' answers are kept for `cache_seconds`; the children's state, which costs
        nothing to read, is read on every call.
        """
        with self._lock:
            now = time.monotonic()
            if self._report is None or now - self._report[0] >= self.cache_seconds:
                self._report = (time.monotonic(), *self._probe())
            _, problems, parts = self._report
        problems, parts = list(problems), dict(parts)
        if self.children is not None:
            children = self.children()
            parts["children"] = children
            for name, child in children.items():
                if not child["running"]:
                    problems.append(f"{name}: not running ({child['lastExit'] or 'starting'})")
        return ("; ".join(problems) or None), parts

    def _probe(self) -> tuple[list[str], dict[str, Any]]:
        for name, check in self.checks.items():
            if name not in self._calls or self._calls[name].done():
                self._calls[name] = _call(name, check)
        futures = dict(self._calls)
        deadline = time.monotonic() + self.timeout
        parts: dict[str, Any] = {}
        problems: list[str] = []
        for name, future in futures.items():
            try:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
            except concurrent.futures.TimeoutError:
                problem = f"did not answer within {self.timeout:g} s"
            except Exception as exc:
                problem = mask_secrets(" ".join(str(exc).split())) or type(exc).__name__
            else:
                parts[name] = {"ready": True}
                continue
            parts[name] = {"ready": False, "error": problem}
            problems.append(f"{name}: {problem}")
        return problems, parts


def _call(name: str, check: Check) -> concurrent.futures.Future[None]:
    """`check()` on a daemon thread of its own (one hung on a silent broker must not hold the
    process at exit, as an executor's threads would)."""
    future: concurrent.futures.Future[None] = concurrent.futures.Future()

    def run() -> None:
        try:
            check()
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(None)

    threading.Thread(target=run, name=f"procexec-readyz-{name}", daemon=True).start()
    return future


def _readiness(request: Request) -> Readiness:
    readiness: Readiness = request.app.state.procexec.readiness
    return readiness


@router.get("/healthz", summary="Liveness: the API process answers")
def healthz() -> dict[str, str]:
    """`{"status": "ok"}` whenever the API process can answer; asks nothing else."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: the store and the broker answer (and, under standalone, its children)",
    responses={
        503: {
            "description": "A part does not answer: `error` names it and why",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["error", "status", "checks"],
                        "properties": {
                            "error": {"type": "string"},
                            "status": {"type": "integer"},
                            "checks": {"type": "object"},
                        },
                    }
                }
            },
            "headers": {
                "x-odsl-error": {
                    "description": "the error's text",
                    "required": True,
                    "schema": {"type": "string"},
                }
            },
        }
    },
)
def readyz(request: Request) -> Response:
    """200 with every part's state when all answer; 503 naming the one that does not."""
    problem, parts = _readiness(request).report()
    if problem is None:
        return JSONResponse({"status": "ready", "checks": parts})
    message = f"not ready: {problem}"
    return JSONResponse(
        {"error": message, "status": 503, "checks": parts},
        status_code=503,
        headers={"x-odsl-error": error_header(message)},
    )
