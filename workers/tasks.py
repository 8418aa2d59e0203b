"""The Celery app that workers run (`celery -A workers.tasks worker`), and its tasks."""

from __future__ import annotations

import functools
import logging
import os
import socket

from celery import Task

from engine.config import Settings, load_registry
from engine.runner import PhaseRunner
from engine.store import open_store
from engine.trigger import TriggerService
from workers.celery_app import RUN_TASK, celery_dispatch, make_celery

logger = logging.getLogger(__name__)

app = make_celery(Settings.from_env())


@functools.cache
def _runner(pid: int) -> PhaseRunner:
    """One runner per worker process: its store connection and its processes."""
    settings: Settings = app.conf.procexec_settings
    store, registry = open_store(settings.store_url), load_registry(settings)
    return PhaseRunner(
        store,
        registry,
        worker_id=f"{socket.gethostname()}:{pid}",
        flush_interval=settings.log_flush_interval,
        triggers=TriggerService(store, registry, celery_dispatch(settings, app)),
        heartbeat_interval=settings.heartbeat_interval,
        max_log_lines=settings.max_log_lines,
    )


@app.task(name=RUN_TASK, bind=True, ignore_result=True)
def run_execution(self: Task, execution_id: str) -> str | None:
    """Run one execution by id; a copy of an execution already claimed does nothing."""
    status = _runner(os.getpid()).run(execution_id)
    logger.info("execution %s finished: %s", execution_id, status)
    return status
