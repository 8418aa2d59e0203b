"""The Celery app that workers run (`celery -A procexec.workers.tasks worker`), and its tasks."""

from __future__ import annotations

import functools
import logging
import os
import socket

from celery import Task
from celery.signals import worker_init, worker_process_shutdown, worker_shutdown

from procexec.engine.concurrency import Limits
from procexec.engine.domain import DEFAULT_ENVIRONMENT, Status
from procexec.engine.log_format import run_logged
from procexec.engine.notify import Notifier
from procexec.engine.notify_sender import SENDER
from procexec.engine.runner import PhaseRunner
from procexec.engine.settings import Settings
from procexec.service import Service, build
from procexec.workers import worker_metrics
from procexec.workers.celery_app import LOAD_TASK, RUN_TASK, TRIGGER_TASK, make_celery

logger = logging.getLogger(__name__)

app = make_celery(Settings.from_env())
worker_metrics.prepare(app.conf.procexec_settings)  # before Celery forks its processes


@worker_init.connect
def _serve_metrics(**_: object) -> None:
    """The worker's own metrics, on `PROCEXEC_METRICS_PORT` when set (`worker_metrics`)."""
    worker_metrics.serve(app.conf.procexec_settings)


@functools.cache
def _service(pid: int) -> Service:
    """One service per worker process: its store connection, its processes, its triggers."""
    return build(app.conf.procexec_settings, celery=app)


@functools.cache
def _runner(pid: int) -> PhaseRunner:
    """One runner per worker process."""
    settings: Settings = app.conf.procexec_settings
    service = _service(pid)
    return PhaseRunner(
        service.store,
        service.registry,
        worker_id=f"{socket.gethostname()}:{pid}",
        flush_interval=settings.log_flush_interval,
        triggers=service.triggers,
        heartbeat_interval=settings.heartbeat_interval,
        max_log_lines=settings.max_log_lines,
        loads_here=_consumes(settings.loader_queue),
        notifier=Notifier.of(settings, service.registry),
        limits=Limits(
            service.store, service.registry, service.triggers, max_running=settings.max_running
        ),
    )


@worker_process_shutdown.connect
@worker_shutdown.connect
def _send_notifications(**_: object) -> None:
    """A worker's process that ends sends what notifications it holds first (a prefork
    child ends without running atexit's functions), for a few seconds at most."""
    SENDER.close()


def _consumes(queue: str) -> bool:
    """Whether this worker consumes `queue` (its `-Q`, or every queue the app declares when
    none was chosen): one that consumes the loader queue runs LOAD itself, never handing the
    batch over to itself."""
    if not queue:
        return False
    return queue in (app.amqp.queues.consume_from or app.amqp.queues)


class RunFailed(Exception):
    """A run that ended `failed`: its task ends as FAILURE with the run's message, so that
    Flower's failed tasks are the failed runs. An expected outcome, logged without traceback."""


@app.task(name=RUN_TASK, bind=True, ignore_result=True, throws=(RunFailed,))
def run_execution(self: Task, execution_id: str, process: str | None = None) -> str | None:
    """Run one execution by id; a copy of an execution already claimed does nothing.

    Sent as keywords (`execution_id`, `process`: the name, for the operators' view); a
    message of the earlier form, the id alone as an argument, runs the same.
    """
    return _run(execution_id, process)


@app.task(name=LOAD_TASK, bind=True, ignore_result=True, throws=(RunFailed,))
def load_execution(
    self: Task, execution_id: str, ticket: str, process: str | None = None
) -> str | None:
    """Run the LOAD of a run whose batch SEND handed to the loader queue under `ticket`; a
    copy of a message already taken, or of a cancelled run, does nothing."""
    return _run(execution_id, process, ticket)


def _run(execution_id: str, process: str | None, ticket: str | None = None) -> str | None:
    """Run it, every line logged meanwhile naming the run (`PROCEXEC_LOG_FORMAT=json`)."""
    with run_logged(execution_id, process):
        return _run_logged(execution_id, process, ticket)


def _run_logged(execution_id: str, process: str | None, ticket: str | None) -> str | None:
    runner = _runner(os.getpid())
    label = f"{process or 'execution'} {execution_id}"
    # one line a run at INFO, when it ends (Celery's own says when its task was received)
    logger.debug("%s: %s", label, "LOAD started" if ticket else "started")
    status = runner.run(execution_id, ticket)
    if status is None:
        logger.info("%s: claimed elsewhere or finished already; nothing to do", label)
        return None
    if status == Status.TRIGGERED.value:
        logger.info("%s: waits for a slot of its concurrency limit", label)
        return status
    if status == Status.RUNNING.value:
        logger.info("%s: batch handed to the loader queue", label)
        return status
    logger.info("%s: finished %s", label, status)
    failed = status == Status.FAILED.value
    if worker_metrics.METRICS is None and not failed:
        return status
    doc = runner.store.get(execution_id)  # read once, for the metrics and the failure
    worker_metrics.ended(doc)
    if failed:
        raise RunFailed(f"{label}: {(doc or {}).get('message') or 'failed'}")
    return status


@app.task(name=TRIGGER_TASK, ignore_result=True)
def trigger_process(process: str, environment: str = DEFAULT_ENVIRONMENT) -> str:
    """Trigger a run of `process` (as the beat's entries name it; `celery call` works too)."""
    doc = _service(os.getpid()).triggers.trigger(
        process,
        run_as="celery",
        environment=environment,
        reason=f"Triggered by the Celery task {TRIGGER_TASK}",
    )
    logger.info("%s %s: triggered", process, doc["_id"])
    return str(doc["_id"])
