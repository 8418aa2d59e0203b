"""What routes depend on: the service state, the caller, the environment."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from procexec.api.auth import authenticate
from procexec.api.errors import ApiError
from procexec.api.health import Readiness
from procexec.api.trigger_queue import TriggerQueue
from procexec.engine.cancellation import Revoke
from procexec.engine.domain import DEFAULT_ENVIRONMENT, Scope
from procexec.engine.errors import excerpt
from procexec.engine.process import ProcessRegistry
from procexec.engine.settings import Settings
from procexec.engine.store.base import ExecutionStore, TokenRecord
from procexec.engine.tokens import TokenCache
from procexec.engine.trigger_service import TriggerService

_ENVIRONMENT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: the `x-odsl-environment` header in the OpenAPI description (`openapi_extra=` of the routes
#: that read it); blanks around the name are dropped
ENVIRONMENT_HEADER: dict[str, Any] = {
    "parameters": [
        {
            "name": "x-odsl-environment",
            "in": "header",
            "required": False,
            "description": "the environment of the executions",
            "schema": {
                "type": "string",
                "pattern": r"^\s*[A-Za-z0-9_-]{1,64}\s*$",
                "default": DEFAULT_ENVIRONMENT,
            },
        }
    ]
}


@dataclass
class ServiceState:
    settings: Settings
    store: ExecutionStore
    registry: ProcessRegistry
    triggers: TriggerService
    build: dict[str, Any]
    tokens: TokenCache
    revoke: Revoke | None = None
    #: what `GET /readyz` asks (`api.health`)
    readiness: Readiness = field(default_factory=lambda: Readiness({}))
    #: list queries (by hash) that overran the event loop's budget, and until when they go
    #: straight to a worker thread (`api.routes._serve_list`)
    overran: dict[int, float] = field(default_factory=dict)
    #: records and dispatches the triggers (`api.trigger_queue`), made from `triggers`
    trigger_queue: TriggerQueue = field(init=False)

    def __post_init__(self) -> None:
        self.trigger_queue = TriggerQueue(self.triggers)


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.procexec
    return state


def get_environment(request: Request) -> str:
    value = request.headers.get("x-odsl-environment", DEFAULT_ENVIRONMENT).strip()
    if not _ENVIRONMENT.match(value):
        raise ApiError(400, f"x-odsl-environment: '{excerpt(value)}' is not an environment name")
    return value


def reader(request: Request, state: Annotated[ServiceState, Depends(get_state)]) -> TokenRecord:
    return authenticate(request, state.tokens, Scope.READ)


def runner(request: Request, state: Annotated[ServiceState, Depends(get_state)]) -> TokenRecord:
    return authenticate(request, state.tokens, Scope.RUN)


def admin(request: Request, state: Annotated[ServiceState, Depends(get_state)]) -> TokenRecord:
    return authenticate(request, state.tokens, Scope.ADMIN)


StateDep = Annotated[ServiceState, Depends(get_state)]
EnvironmentDep = Annotated[str, Depends(get_environment)]
Reader = Annotated[TokenRecord, Depends(reader)]
Runner = Annotated[TokenRecord, Depends(runner)]
Admin = Annotated[TokenRecord, Depends(admin)]
