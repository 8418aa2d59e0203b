"""A worker's own metrics, served at `/metrics` on `PROCEXEC_METRICS_PORT` when it is set
(docs/operations.md, "Metrics"): what only the process that ran a run saw as it ended.

* `procexec_runs_ended_total` by process, trigger and final status;
* `procexec_phase_duration_seconds`, a histogram by process, phase and phase status, of the
  phases of each run that ended here (from their recorded `start` and `end`);
* `procexec_webhook_deliveries_total` by outcome, of this worker's processes, each counted as
  its sender's thread meets it.

A prefork worker's runs end in its child processes: the figures go through prometheus-client's
multiprocess mode, each child writing its own files in `PROMETHEUS_MULTIPROC_DIR` (a private
temporary folder made at start-up unless given) and the worker's main process serving their
sum. The folder must be set before any metric exists, so `prepare()` runs as the worker's app
is imported, before Celery forks; `serve()` starts the server once Celery's worker starts.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess, values
from prometheus_client import start_http_server as _start

from procexec.engine.notify_sender import SENDER
from procexec.engine.settings import Settings
from procexec.engine.timeutil import parse_iso

logger = logging.getLogger(__name__)

MULTIPROC = "PROMETHEUS_MULTIPROC_DIR"
#: a phase's buckets, in seconds: from a quick API call to a long load
PHASE_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)


class WorkerMetrics:
    """The worker's figures (in no registry: the multiprocess collector reads their files)."""

    def __init__(self) -> None:
        self.runs = Counter(
            "procexec_runs_ended",
            "runs that ended on this worker, by process, trigger and final status",
            ["process", "trigger", "status"],
            registry=None,
        )
        self.phases = Histogram(
            "procexec_phase_duration_seconds",
            "durations of the phases of the runs that ended on this worker",
            ["process", "phase", "status"],
            buckets=PHASE_BUCKETS,
            registry=None,
        )
        self.deliveries = Counter(
            "procexec_webhook_deliveries",
            "webhook deliveries of this worker, by outcome",
            ["outcome"],
            registry=None,
        )
        for outcome in SENDER.counts.as_dict():
            self.deliveries.labels(outcome)  # each outcome shown, at 0 until one comes
        # each outcome counted as the sender's thread meets it, in whichever process (a
        # prefork child too: the watcher is inherited), not only when a run ends
        SENDER.counts.watcher = self.delivered

    def ended(self, doc: Mapping[str, Any]) -> None:
        """Count a run that ended, and time its phases."""
        name = str(doc.get("name"))
        self.runs.labels(name, str(doc.get("trigger")), str(doc.get("status"))).inc()
        for phase in doc.get("phases") or ():
            seconds = _seconds(phase.get("start"), phase.get("end"))
            if seconds is not None:
                self.phases.labels(name, str(phase.get("name")), str(phase.get("status"))).observe(
                    seconds
                )

    def delivered(self, outcome: str) -> None:
        """Count one delivery's outcome (`SENDER`'s watcher)."""
        self.deliveries.labels(outcome).inc()


def _seconds(start: Any, end: Any) -> float | None:
    if not isinstance(start, str) or not isinstance(end, str):
        return None
    try:
        return max(0.0, (parse_iso(end) - parse_iso(start)).total_seconds())
    except ValueError:
        return None


#: the figures, once `prepare()` found a port set; None: no metrics
METRICS: WorkerMetrics | None = None


def prepare(settings: Settings) -> WorkerMetrics | None:
    """With `PROCEXEC_METRICS_PORT` set: the multiprocess folder, then the figures."""
    global METRICS
    if settings.metrics_port is None or METRICS is not None:
        return METRICS
    if not os.environ.get(MULTIPROC):
        os.environ[MULTIPROC] = tempfile.mkdtemp(prefix="procexec-metrics-")
    # prometheus-client picks its value class as it is imported: another module may have
    # imported it first, so the multiprocess one is set here, before any figure is made
    values.ValueClass = values.MultiProcessValue()
    METRICS = WorkerMetrics()
    return METRICS


def serve(settings: Settings) -> Any:
    """Serve the sum of every process's figures on `PROCEXEC_METRICS_PORT` (all addresses)."""
    if settings.metrics_port is None or METRICS is None:
        return None
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    served = _start(settings.metrics_port, registry=registry)
    logger.info("metrics served on port %d", settings.metrics_port)
    return served


def ended(doc: Mapping[str, Any] | None) -> None:
    """Count a run that ended here, where metrics are on."""
    if METRICS is not None and doc is not None:
        METRICS.ended(doc)
