"""The Celery application, configured from procexec's settings.

With no `PROCEXEC_BROKER_URL`, the broker is kombu's filesystem transport (hardened, see
`workers.fs_transport`) in the data folder: it needs no server, works across processes, and keeps
fanout (so `inspect` and Flower work).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger

from procexec.engine import shown_parameters
from procexec.engine.cancellation import Revoke
from procexec.engine.errors import BrokerUnavailable
from procexec.engine.log_format import follow_root_format
from procexec.engine.private_files import private_folder
from procexec.engine.redact import mask_secrets, masked_url, redact_logging
from procexec.engine.settings import Settings
from procexec.engine.trigger_service import Dispatch, HandOff
from procexec.workers.fs_transport import SCHEME
from procexec.workers.sent_events import SentEvents, TaskEventsEvery

logger = logging.getLogger(__name__)

RUN_TASK = "procexec.run"
#: the task that runs a run's LOAD on the loader queue (`Settings.loader_queue`)
LOAD_TASK = "procexec.load"
#: the task that triggers a process by name (the beat's entries name it)
TRIGGER_TASK = "procexec.trigger"
QUEUE = "procexec"
#: seconds a readiness check waits for the broker
PING_TIMEOUT = 2.0


@after_setup_logger.connect
@after_setup_task_logger.connect
def _redact_celery_logging(**_: Any) -> None:
    """Once Celery (worker, beat) has set up its own log handlers, no password or token goes
    into a log line through them either (`engine.redact`), and they write JSON lines where
    the root does (`PROCEXEC_LOG_FORMAT=json`)."""
    redact_logging()
    follow_root_format()


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
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    private_folder(root, tree=True)  # the messages name runs: the service's user's alone
    return f"{SCHEME}://localhost//", {
        "data_folder_in": str(queue),
        "data_folder_out": str(queue),
        "processed_folder": str(processed),
        "control_folder": str(control),
        "store_processed": False,
        # A consumer waits on a wake-up socket (`workers.fs_wake`) and looks at the folder
        # every `fallback_interval` in case one was lost; without a socket, it polls.
        "polling_interval": 0.1,
        "fallback_interval": 1.0,
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
        # A trigger must not hang while the broker is down: fail fast, and the housekeeper
        # sends the recorded execution again once the broker is back.
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.25,
            "interval_max": 0.5,
        },
        broker_connection_timeout=3,
        # Runs whose connection to the broker drops go on; their message is acked or, if the
        # worker dies, the housekeeper recovers the run from the store.
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    app.steps["consumer"].add(TaskEventsEvery)  # the worker's task events, batched
    app.conf.procexec_settings = settings
    return app


@functools.cache
def _shared_app(settings: Settings) -> Celery:
    return make_celery(settings)


def celery_dispatch(settings: Settings, app: Celery | None = None) -> Dispatch:
    """A `Dispatch` that sends the run task through Celery (`app`, or one for `settings`)."""
    app = app or _shared_app(settings)

    events = sent_events(app)

    def dispatch(execution_id: str, delay: float, process: str | None) -> None:
        # The task id is the execution id, so that cancelling can revoke it by name; its
        # keyword arguments name the process, for Flower and `celery inspect`, which also
        # show the run's parameters, secrets masked (not sent: the worker reads them stored).
        kwargs = {"execution_id": execution_id, "process": process}
        with _broker_errors(settings):
            app.send_task(
                RUN_TASK,
                kwargs=kwargs,
                task_id=execution_id,
                countdown=delay or None,
                queue=QUEUE,
                **shown(kwargs, shown_parameters.take(execution_id)),
                event_dispatcher=events,
            )

    return dispatch


@functools.cache
def sent_events(app: Celery) -> SentEvents:
    """The batched `task-sent` events of `app` (`workers.sent_events`), one per app."""
    return SentEvents(app)


def shown(kwargs: dict[str, str | None], parameters: str | None = None) -> dict[str, str]:
    """How a task's arguments are shown (Flower, `celery inspect`, the task-sent event): as
    Celery's `saferepr` shows these, short strings or None, at a fraction of its cost; with
    `parameters`, the run's (`engine.shown_parameters.brief`), as one more keyword."""
    text = repr(kwargs)
    if parameters is not None:
        text = f"{text[:-1]}, 'parameters': {parameters}}}"
    return {"argsrepr": "()", "kwargsrepr": text}


def load_task_id(execution_id: str) -> str:
    """The id of the task that runs an execution's LOAD (cancelling revokes it too)."""
    return f"{execution_id}:load"


def celery_hand_off(settings: Settings, app: Celery | None = None) -> HandOff | None:
    """A `HandOff` that sends LOAD tasks to the loader queue; None where there is none."""
    if not settings.loader_queue:
        return None
    app = app or _shared_app(settings)
    queue = settings.loader_queue

    events = sent_events(app)

    def hand_off(execution_id: str, ticket: str, process: str | None) -> None:
        kwargs = {"execution_id": execution_id, "process": process, "ticket": ticket}
        with _broker_errors(settings):
            app.send_task(
                LOAD_TASK,
                kwargs=kwargs,
                task_id=load_task_id(execution_id),
                queue=queue,
                **shown(kwargs),
                event_dispatcher=events,
            )

    return hand_off


def broker_name(settings: Settings) -> str:
    """The broker, as shown: its URL with the password masked, or the embedded one's folder."""
    if settings.broker_url is None:
        return f"embedded (filesystem) in {settings.data_dir / 'broker'}"
    return masked_url(settings.broker_url)


@contextlib.contextmanager
def _broker_errors(settings: Settings) -> Iterator[None]:
    """What the broker raises, as a `BrokerUnavailable` naming the broker and the error."""
    try:
        yield
    except Exception as exc:
        reason = " ".join(mask_secrets(f"{type(exc).__name__}: {exc}").split())
        raise BrokerUnavailable(f"broker {broker_name(settings)}: {reason}") from exc


def celery_ping(settings: Settings, app: Celery | None = None) -> Callable[[], None]:
    """A readiness check (`api.health`): connects to the broker afresh, raises if it cannot."""
    app = app or _shared_app(settings)

    def ping() -> None:
        with app.connection_for_write() as conn:
            # One try, no retry: the caller asks again soon enough.
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=PING_TIMEOUT)
            conn.default_channel  # noqa: B018 - opening a channel is what Redis answers to

    return ping


def celery_revoke(settings: Settings, app: Celery | None = None) -> Revoke:
    """A `Revoke` that tells every worker to drop the tasks of an execution (its run, and its
    LOAD where that waits on the loader queue)."""
    app = app or _shared_app(settings)

    def revoke(execution_id: str) -> None:
        try:
            app.control.revoke([execution_id, load_task_id(execution_id)])
        except Exception as exc:  # the run is failed in the store already; it will not start
            logger.warning("revoking %s failed: %s", execution_id, exc)

    return revoke
