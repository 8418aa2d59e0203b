"""The composition root: procexec built from its settings, in one place.

The API (`procexec.api.app`), the worker's tasks (`procexec.workers.tasks`), the beat
(`procexec.workers.beat`) and the command (`procexec.cli`) each ask `build()` for the same
parts: the store the settings name, the processes of the installed plugins and configured
modules, the trigger service, and how a trigger reaches the workers (Celery, unless a caller
hands its own dispatch, as the API's tests do).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from procexec.engine.cancellation import Revoke
from procexec.engine.errors import ProcexecError
from procexec.engine.plugins import load_registry
from procexec.engine.private_files import private_folder
from procexec.engine.process import ProcessRegistry
from procexec.engine.settings import Settings
from procexec.engine.store import ExecutionStore, open_store, sqlite_path, store_exists
from procexec.engine.trigger_service import Dispatch, HandOff, TriggerService

if TYPE_CHECKING:
    from collections.abc import Callable

    from celery import Celery


@dataclass(frozen=True)
class Service:
    """procexec's parts, wired."""

    settings: Settings
    store: ExecutionStore
    registry: ProcessRegistry
    triggers: TriggerService
    #: tells every worker to drop an execution's task (None where nothing dispatches to Celery)
    revoke: Revoke | None
    #: asks the broker to answer (`/readyz`); None where nothing dispatches to Celery
    broker_ping: Callable[[], None] | None


def settings() -> Settings:
    """The environment's settings, their data folder made, and private with the files in it
    (see `engine.private_files`)."""
    found = Settings.from_env()
    private_folder(found.data_dir, files=True)
    return found


class StoreMissing(ProcexecError):
    """A command that works on a running service's store found none where the settings say."""


def existing_store(
    config: Settings, *, prepare: bool = True, timeout: float = 5.0
) -> ExecutionStore:
    """The store of `config`, which a service must have made: a command run with other
    settings than the service's (another folder, say) must not make an empty one of its own.

    Without `prepare`, it is opened as it is (`open_store`), for `procexec store check`; a
    MongoDB server has `timeout` seconds to say whether it holds the database."""
    if not store_exists(config.store_url, timeout):
        where = sqlite_path(config.store_url) or "the MongoDB database of PROCEXEC_STORE_URL"
        raise StoreMissing(
            f"no store at {where}: the service makes it when it starts (procexec standalone, "
            f"api or worker); run this with the service's PROCEXEC_DATA_DIR or "
            f"PROCEXEC_STORE_URL"
        )
    return open_store(config.store_url, prepare=prepare)


def build(
    config: Settings | None = None,
    *,
    store: ExecutionStore | None = None,
    registry: ProcessRegistry | None = None,
    dispatch: Dispatch | None = None,
    revoke: Revoke | None = None,
    celery: Celery | None = None,
    hand_off: HandOff | None = None,
) -> Service:
    """procexec from `config` (the environment's settings by default); any part given is used
    as it is. Without `dispatch`, triggers go through Celery (`celery`, or the app the settings
    describe), and LOAD phases to the loader queue of the settings; with a `dispatch` of
    the caller's, LOAD is handed off only through a `hand_off` of the caller's too."""
    config = config or settings()
    store = store or open_store(config.store_url)
    registry = registry or load_registry(config)
    broker_ping = None
    if dispatch is None:
        from procexec.workers.celery_app import (
            celery_dispatch,
            celery_hand_off,
            celery_ping,
            celery_revoke,
        )

        dispatch = celery_dispatch(config, celery)
        hand_off = hand_off or celery_hand_off(config, celery)
        revoke = revoke or celery_revoke(config, celery)
        broker_ping = celery_ping(config, celery)
    return Service(
        settings=config,
        store=store,
        registry=registry,
        triggers=TriggerService(store, registry, dispatch, hand_off),
        revoke=revoke,
        broker_ping=broker_ping,
    )
