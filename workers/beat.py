"""A Celery beat scheduler whose entries come from the process definitions and the store.

Each tick re-reads the operators' overrides (enable, disable, reschedule) from the store, so a
running beat picks them up within seconds; the firing itself is `engine.scheduler`, which makes
several beats running at once trigger each fire time once.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Celery
from celery.beat import ScheduleEntry, Scheduler
from celery.schedules import schedule as every

from procexec.engine.concurrency import Limits
from procexec.engine.housekeeping import Housekeeper
from procexec.engine.notify import Notifier
from procexec.engine.scheduler import SchedulerService
from procexec.engine.settings import Settings
from procexec.service import build
from procexec.workers.beat_metrics import BeatMetrics
from procexec.workers.celery_app import TRIGGER_TASK

logger = logging.getLogger(__name__)

#: the longest sleep between two ticks: how soon an operator's change is seen
MAX_TICK = 5.0


class ProcessScheduler(Scheduler):
    """Fires the processes' crontabs through `SchedulerService`."""

    def __init__(self, app: Celery, *args: Any, **kwargs: Any) -> None:
        settings: Settings = app.conf.procexec_settings
        service = build(settings, celery=app)
        notifier = Notifier.of(settings, service.registry)
        self.service = SchedulerService(
            service.store, service.registry, service.triggers, notifier=notifier
        )
        self.housekeeper = Housekeeper(
            service.store,
            service.registry,
            service.triggers,
            lost_timeout=settings.lost_run_timeout,
            redispatch_after=settings.redispatch_after,
            retention_days=settings.retention_days,
            notifier=notifier,
            limits=Limits(
                service.store,
                service.registry,
                service.triggers,
                max_running=settings.max_running,
                state_ttl=0,
            ),
        )
        # the housekeeping deletes finished runs past their retention; a store that can
        # delete them by itself (MongoDB's TTL indexes) is told the retention too
        service.store.keep_for(settings.retention_days)
        self.metrics: BeatMetrics | None = None
        if settings.beat_metrics_port is not None:
            # celery's beat makes two schedulers (a lazy one for its banner, then the one that
            # ticks): both count into the figures served on the port, which is served once
            self.metrics = BeatMetrics.serving(settings.beat_metrics_port)
        self.housekeeping_interval = min(5.0, settings.lost_run_timeout / 4)
        self._last_housekeeping = 0.0
        # celery's beat passes `max_interval=None` when not configured: keep ours then
        kwargs["max_interval"] = kwargs.get("max_interval") or MAX_TICK
        super().__init__(app, *args, **kwargs)

    def setup_schedule(self) -> None:
        self._refresh_entries()

    def _refresh_entries(self) -> None:
        """Mirror the schedules as beat entries, for `celery inspect` and the beat's log."""
        self.data = {
            f"procexec:{item.process.name}": ScheduleEntry(
                name=f"procexec:{item.process.name}",
                task=TRIGGER_TASK,
                schedule=every(60),
                args=(item.process.name,),
                app=self.app,
            )
            for item in self.service.schedules()
            if item.enabled and item.crontab is not None
        }

    def tick(self, *args: Any, **kwargs: Any) -> float:
        try:
            result = self.service.tick()
            for execution_id in result.triggered:
                logger.info("triggered scheduled execution %s", execution_id)
            if self.metrics is not None:
                self.metrics.fired(result.fired)
            self._refresh_entries()
            self._housekeeping()
            ceiling = min(self.max_interval, self.housekeeping_interval)
            return self.service.seconds_to_next(ceiling=ceiling)
        except Exception:
            logger.exception("scheduler tick failed; retrying")
            return 1.0

    def _housekeeping(self) -> None:
        """Recover runs whose worker died, resend triggers no worker took, and delete finished
        runs past their retention."""
        if time.monotonic() - self._last_housekeeping < self.housekeeping_interval:
            return
        self._last_housekeeping = time.monotonic()
        report = self.housekeeper.run_once()
        if self.metrics is not None:
            self.metrics.housekept(report)
        if report.resumed or report.failed or report.redispatched or report.handed_again:
            logger.warning(
                "housekeeping: %d lost run(s) resumed, %d failed, %d trigger(s) sent again, "
                "%d LOAD(s) sent to the loader queue again",
                len(report.resumed),
                len(report.failed),
                len(report.redispatched),
                len(report.handed_again),
            )
        if report.purged:
            logger.info("housekeeping: %d finished run(s) past retention deleted", report.purged)
        if report.woken:
            logger.info("housekeeping: %d run(s) waiting for a slot sent", len(report.woken))

    @property
    def info(self) -> str:
        scheduled = [s for s in self.service.schedules() if s.enabled and s.crontab is not None]
        return f"    . procexec: {len(scheduled)} scheduled process(es)"
