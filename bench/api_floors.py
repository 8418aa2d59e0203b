"""The two floors bench/api.py measures the API against, each a plain Starlette app (no auth,
no middleware, no FastAPI) served by the same uvicorn configuration as `procexec api`
(`BoundedHttpProtocol`, the same log level, the switch interval the API sets), each in a
subprocess of its own (`bench/api.py --serve-bare …` or `--serve-work …`):

- the bare route: answers the bytes the API answered, fixed; the cost of HTTP alone;
- the work route: does a trigger's unavoidable work through procexec's own parts, and nothing
  else. It builds the Service as the API does (`procexec.service.build` on the environment's
  settings: the same SQLite store, the same Redis broker, the same registry), and
  per POST reads the body's JSON (`name`, `body`) and awaits
  `TriggerQueue(service.triggers).trigger(...)`, as the API's trigger route does (its two
  threads: the runs taken together recorded in one `store.batch()` transaction, then sent to
  the broker), answering the document as JSON with 202; per GET, `service.store.get(id)` in
  a worker thread (`run_in_threadpool`, as the API's read route), answered as JSON.

What the API does beyond the work route (its middleware, its routing, the token, the body's
checks, the environment header, the answer's headers) is its own cost over the floor.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

#: the user the work route's runs are recorded for (bench/api.py's token's user)
RUN_AS = "bench"


def _serve(app: Any, port: int, log_level: str) -> None:
    """`app` served as `procexec api` serves the API."""
    import uvicorn

    from procexec.api.app import SWITCH_SECONDS
    from procexec.api.server import BoundedHttpProtocol

    sys.setswitchinterval(SWITCH_SECONDS)
    uvicorn.run(app, http=BoundedHttpProtocol, host="127.0.0.1", port=port, log_level=log_level)


def serve_bare(port: int, post_file: str, get_file: str, log_level: str) -> None:
    """The HTTP floor: two routes answering fixed bytes."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    posted, got = Path(post_file).read_bytes(), Path(get_file).read_bytes()

    async def trigger(request: Request) -> Response:
        await request.body()
        return Response(posted, status_code=202, media_type="application/json")

    async def one(request: Request) -> Response:
        return Response(got, media_type="application/json")

    app = Starlette(routes=[Route("/bare", trigger, methods=["POST"]), Route("/bare/{id}", one)])
    _serve(app, port, log_level)


def serve_work(port: int, log_level: str) -> None:
    """The trigger's floor: the work of a trigger and of a read, through procexec's parts."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from procexec.api.trigger_queue import TriggerQueue
    from procexec.engine.domain import DEFAULT_ENVIRONMENT
    from procexec.service import build

    service = build()  # the environment's settings, as `procexec api`'s
    queue = TriggerQueue(service.triggers)
    store = service.store

    async def trigger(request: Request) -> Response:
        payload = json.loads(await request.body())
        doc = await queue.trigger(
            payload["name"],
            run_as=RUN_AS,
            environment=DEFAULT_ENVIRONMENT,
            body=payload.get("body"),
        )
        return JSONResponse(doc, status_code=202)

    def read(execution_id: str) -> Response:
        doc = store.get(execution_id, DEFAULT_ENVIRONMENT)
        return JSONResponse(doc) if doc is not None else Response(status_code=404)

    async def one(request: Request) -> Response:
        return await run_in_threadpool(read, request.path_params["id"])

    routes = [Route("/work-route", trigger, methods=["POST"]), Route("/work-route/{id}", one)]
    app = Starlette(routes=routes)
    _serve(app, port, log_level)
