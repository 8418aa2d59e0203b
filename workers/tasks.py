"""The Celery app that workers run (`celery -A procexec.workers.tasks worker`), and its tasks."""

from __future__ import annotations

import functools
import logging
import os
import socket

from celery import Task

from procexec.engine.runner import PhaseRunner
from procexec.engine.settings import Settings
from procexec.service import build
from procexec.workers.celery_app import RUN_TASK, make_celery

logger = logging.getLogger(__name__)

app = make_celery(Settings.from_env())


@functools.cache
def _runner(pid: int) -> PhaseRunner:
    """One runner per worker process: its store connection and its processes."""
    settings: Settings = app.conf.procexec_settings
    service = build(settings, celery=app)
    return PhaseRunner(
        service.store,
        service.registry,
        worker_id=f"{socket.gethostname()}:{pid}",
        flush_interval=settings.log_flush_interval,
        triggers=service.triggers,
        heartbeat_interval=settings.heartbeat_interval,
        max_log_lines=settings.max_log_lines,
    )


@app.task(name=RUN_TASK, bind=True, ignore_result=True)
def run_execution(self: Task, execution_id: str) -> str | None:
    """Run one execution by id; a copy of an execution already claimed does nothing."""
    status = _runner(os.getpid()).run(execution_id)
    logger.info("execution %s finished: %s", execution_id, status)
    return status
