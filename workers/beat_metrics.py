"""The beat's own metrics, served at `/metrics` on `PROCEXEC_BEAT_METRICS_PORT` when it is set
(docs/operations.md, "Metrics"): what only the beat sees as it fires schedules and keeps house.

* `procexec_beat_fires_total` by process: the scheduled runs this beat triggered (several beats
  running at once trigger each fire time once: sum them);
* `procexec_lost_runs_total` by outcome (`resumed`, `failed`): runs whose worker died, found
  by this beat's housekeeping;
* `procexec_triggers_resent_total` by kind (`run`, `load`): triggers no worker took, and
  handed-over LOADs no loader took, sent again;
* `procexec_webhook_deliveries_total` by outcome: the notifications this beat sent (lost runs,
  missed fire times), each counted as its sender's thread meets it.

Its own setting, not the workers' `PROCEXEC_METRICS_PORT`: `procexec standalone` runs a worker
and a beat on one host.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, start_http_server

from procexec.engine.housekeeping import Report
from procexec.engine.notify_sender import SENDER

logger = logging.getLogger(__name__)


class BeatMetrics:
    """The beat's figures, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.fires = Counter(
            "procexec_beat_fires",
            "scheduled runs this beat triggered, by process",
            ["process"],
            registry=self.registry,
        )
        self.lost = Counter(
            "procexec_lost_runs",
            "runs whose worker died, found by this beat, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.resent = Counter(
            "procexec_triggers_resent",
            "triggers (run) and handed-over LOADs (load) no worker took, sent again",
            ["kind"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "procexec_webhook_deliveries",
            "webhook deliveries of this beat (lost runs, missed fire times), by outcome",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in ("resumed", "failed"):
            self.lost.labels(outcome)  # shown at 0 until one comes
        for outcome in SENDER.counts.as_dict():
            self.deliveries.labels(outcome)
        SENDER.counts.watcher = self.delivered  # each counted as the sender meets it
        for kind in ("run", "load"):
            self.resent.labels(kind)

    def fired(self, by_process: Mapping[str, int]) -> None:
        for process, count in by_process.items():
            self.fires.labels(process).inc(count)

    def delivered(self, outcome: str) -> None:
        """Count one delivery's outcome (`SENDER`'s watcher)."""
        self.deliveries.labels(outcome).inc()

    def housekept(self, report: Report) -> None:
        self.lost.labels("resumed").inc(len(report.resumed))
        self.lost.labels("failed").inc(len(report.failed))
        self.resent.labels("run").inc(len(report.redispatched))
        self.resent.labels("load").inc(len(report.handed_again))

    @classmethod
    def serving(cls, port: int) -> BeatMetrics:
        """The figures served on `port` by this process: made and served at the first call,
        the same ones at the next."""
        with _SERVING_LOCK:
            found = _SERVING.get(port)
            if found is None:
                found = _SERVING[port] = cls()
                found.serve(port)
            return found

    def serve(self, port: int) -> Any:
        """Serve them on `port` (all addresses); a port taken is told, and the beat goes on."""
        try:
            served = start_http_server(port, registry=self.registry)
        except OSError as exc:
            logger.error("beat metrics not served on port %d: %s", port, exc)
            return None
        logger.info("beat metrics served on port %d", port)
        return served


#: the figures this process serves, by port (`BeatMetrics.serving`)
_SERVING: dict[int, BeatMetrics] = {}
_SERVING_LOCK = threading.Lock()
