"""`GET /metrics`, at the server's root, in Prometheus's text format (prometheus-client).

What each figure comes from (docs/operations.md, "Metrics"):

* from the store, the same whichever API process answers (`engine.metrics_figures`, read at
  most every few seconds): `procexec_runs` by process and status, `procexec_runs_running`,
  `procexec_runs_waiting` for a worker or for a concurrency slot, `procexec_beat_skipped_total`
  (fire times each schedule skipped), and `procexec_store_up`;
* from the broker, read at scrape time within half a second: `procexec_queue_depth` by queue;
* from this API process alone: `procexec_api_request_duration_seconds` by route and method
  (`RequestTimes`, a pure ASGI middleware: a clock read and a histogram's observation a
  request), and the webhook deliveries it made (`procexec_webhook_deliveries_total`).

Without `PROCEXEC_METRICS_TOKEN` it answers anyone, like `/healthz`; with it, only a request
that carries it as a bearer token (401 otherwise). Not in the OpenAPI description: it is no
part of the API, and answers no JSON.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Iterable, Iterator

from fastapi import APIRouter, Request
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from procexec.api.errors import error_response
from procexec.engine.domain import Status
from procexec.engine.metrics_figures import CachedFigures, StoreFigures
from procexec.engine.notify_sender import SENDER
from procexec.engine.process import ProcessRegistry
from procexec.engine.settings import Settings
from procexec.engine.store import ExecutionStore

logger = logging.getLogger(__name__)

PATH = "/metrics"
#: the latency histogram's buckets, in seconds: the hot reads answer in a millisecond or two
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: the route label of a request no route took (a 404): one series, not one per path
UNMATCHED = "(none)"

router = APIRouter()


class StoreCollector(Collector):
    """The store's and the broker's figures, read as `/metrics` is scraped."""

    def __init__(
        self,
        figures: CachedFigures,
        names: Callable[[], Iterable[str]],
        queue_depth: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self.figures = figures
        self.names = names
        self.queue_depth = queue_depth

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("procexec_store_up", "1 when the store answered the last read")
        try:
            read = self.figures.get(self.names())
        except Exception as exc:  # a store down is a figure, not a 500
            logger.warning("metrics: the store did not answer: %s", exc)
            up.add_metric([], 0)
            yield up
        else:
            up.add_metric([], 1)
            yield up
            yield from _store_families(read)
        if self.queue_depth is not None:
            yield from self._queues()
        deliveries = CounterMetricFamily(
            "procexec_webhook_deliveries",
            "webhook deliveries of this process, by outcome",
            labels=["outcome"],
        )
        for outcome, count in SENDER.counts.as_dict().items():
            deliveries.add_metric([outcome], count)
        yield deliveries

    def _queues(self) -> Iterator[Metric]:
        assert self.queue_depth is not None
        family = GaugeMetricFamily(
            "procexec_queue_depth", "messages waiting in the broker, by queue", labels=["queue"]
        )
        try:
            for queue, depth in sorted(self.queue_depth().items()):
                family.add_metric([queue], depth)
        except Exception as exc:  # a broker down is an absent figure
            logger.warning("metrics: the broker's queues could not be read: %s", exc)
            return
        yield family


def _store_families(read: StoreFigures) -> Iterator[Metric]:
    runs = GaugeMetricFamily(
        "procexec_runs",
        "runs in the store by process and status (retention deletes the oldest)",
        labels=["process", "status", "environment"],
    )
    for (name, status), count in sorted(read.runs.items()):
        runs.add_metric([name, status, read.environment], count)
    yield runs
    running = GaugeMetricFamily("procexec_runs_running", "runs a worker is running")
    running.add_metric([], read.by_status(Status.RUNNING) + read.by_status(Status.RETRYING))
    yield running
    waiting = GaugeMetricFamily(
        "procexec_runs_waiting",
        "triggered runs waiting: for a worker, or for a concurrency slot",
        labels=["for"],
    )
    waiting.add_metric(["worker"], read.waiting_for_worker)
    waiting.add_metric(["slot"], read.waiting_for_slot)
    yield waiting
    skipped = CounterMetricFamily(
        "procexec_beat_skipped", "fire times a schedule skipped, in all", labels=["process"]
    )
    for name, count in sorted(read.skipped.items()):
        skipped.add_metric([name], count)
    yield skipped


class Metrics:
    """An app's registry: its store collector and its request histogram."""

    def __init__(
        self,
        settings: Settings,
        store: ExecutionStore,
        registry: ProcessRegistry,
        queue_depth: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self.settings = settings
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Histogram(
            "procexec_api_request_duration_seconds",
            "time this API process took to answer a request, by route and method",
            ["route", "method"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        names = lambda: [process.name for process in registry]  # noqa: E731
        self.collector = StoreCollector(CachedFigures(store), names, queue_depth)
        self.registry.register(self.collector)
        self._children: dict[tuple[str, str], Callable[[float], None]] = {}

    def observe(self, route: str, method: str, seconds: float) -> None:
        observe = self._children.get((route, method))
        if observe is None:
            observe = self.requests.labels(route, method).observe
            self._children[(route, method)] = observe
        observe(seconds)

    def allowed(self, authorization: str | None) -> bool:
        token = self.settings.metrics_token
        if token is None:
            return True
        scheme, _, given = (authorization or "").partition(" ")
        expected = token.get_secret_value().encode()
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected)


class RequestTimes:
    """Times each HTTP request from its start to its last body chunk, by route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.metrics.observe(route_of(scope), scope["method"], time.perf_counter() - started)


def route_of(scope: Scope) -> str:
    """The template of the route that took the request (`/v1/{key}`), from its path and its
    path parameters (FastAPI's router leaves no route in the scope); `UNMATCHED` where no route
    took it, so that the paths of 404s never become series of their own."""
    if "endpoint" not in scope:
        return UNMATCHED
    path: str = scope.get("path", "")
    for name, raw in (scope.get("path_params") or {}).items():
        text = str(getattr(raw, "value", raw))
        head, found, tail = path.rpartition(text)
        if not found:
            return UNMATCHED
        path = f"{head}{{{name}}}{tail}"
    return path


@router.get(PATH, include_in_schema=False)
def metrics(request: Request) -> Response:
    state: Metrics = request.app.state.metrics
    if not state.allowed(request.headers.get("authorization")):
        return error_response(
            401,
            "/metrics needs PROCEXEC_METRICS_TOKEN as a bearer token",
            {"WWW-Authenticate": "Bearer"},
            request.headers.get("accept"),
        )
    return Response(generate_latest(state.registry), media_type=CONTENT_TYPE_LATEST)
