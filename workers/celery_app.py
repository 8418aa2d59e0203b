"""The Celery application, configured from procexec's settings.

With no `PROCEXEC_BROKER_URL`, the broker is kombu's filesystem transport (hardened, see
`workers.fs_transport`) in the data folder: it needs no server, works across processes, and keeps
fanout (so `inspect` and Flower work).
"""

from __future__ import annotations

import functools
from typing import Any

from celery import Celery

from engine.config import Settings
from engine.trigger import Dispatch
from workers.fs_transport import SCHEME

RUN_TASK = "procexec.run"
QUEUE = "procexec"


def broker_options(settings: Settings) -> tuple[str, dict[str, Any]]:
    """The broker URL and transport options for these settings."""
    if settings.broker_url is not None:
        options: dict[str, Any] = {}
        if settings.broker_url.startswith(("redis://", "rediss://")):
            # Longer than any run, so Redis never redelivers a message still being worked on.
            options["visibility_timeout"] = 12 * 3600
        return settings.broker_url, options
    root = settings.data_dir / "broker"
    queue, processed, control = root / "queue", root / "processed", root / "control"
    for folder in (queue, processed, control):
        folder.mkdir(parents=True, exist_ok=True)
    return f"{SCHEME}://localhost//", {
        "data_folder_in": str(queue),
        "data_folder_out": str(queue),
        "processed_folder": str(processed),
        "control_folder": str(control),
        "store_processed": False,
        "polling_interval": 0.1,
    }


def make_celery(settings: Settings) -> Celery:
    url, options = broker_options(settings)
    app = Celery("procexec", broker=url, set_as_current=False)
    app.conf.update(
        broker_transport_options=options,
        broker_connection_retry_on_startup=True,
        task_default_queue=QUEUE,
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_send_task_events=True,
        task_send_sent_event=True,
        timezone="UTC",
        enable_utc=True,
    )
    app.conf.procexec_settings = settings
    return app


@functools.cache
def _shared_app(settings: Settings) -> Celery:
    return make_celery(settings)


def celery_dispatch(settings: Settings, app: Celery | None = None) -> Dispatch:
    """A `Dispatch` that sends the run task through Celery (`app`, or one for `settings`)."""
    app = app or _shared_app(settings)

    def dispatch(execution_id: str, delay: float) -> None:
        app.send_task(RUN_TASK, args=[execution_id], countdown=delay or None, queue=QUEUE)

    return dispatch
