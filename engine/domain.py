"""The domain's words: the statuses of executions and phases, how a run was triggered,
what a token may do, the phases, the service's name and the default environment."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """Status of an execution, as the platform names them."""

    #: accepted and recorded; no worker has claimed it yet
    TRIGGERED = "triggered"
    #: a worker is running its phases
    RUNNING = "running"
    #: waiting before a retry
    WAITING = "waiting"
    #: a retry is under way
    RETRYING = "retrying"
    #: every phase succeeded
    SUCCESS = "success"
    #: every phase succeeded, with warnings logged
    WARNING = "warning"
    #: a phase failed, or the run was lost, timed out or cancelled
    FAILED = "failed"


#: statuses after which nothing about an execution changes
TERMINAL_STATUSES = frozenset({Status.SUCCESS, Status.WARNING, Status.FAILED})
#: statuses of an execution that a worker holds
ACTIVE_STATUSES = frozenset({Status.RUNNING, Status.WAITING, Status.RETRYING})
#: the same, as the strings a document and a store hold (what a store's query is given)
TERMINAL = frozenset(status.value for status in TERMINAL_STATUSES)
ACTIVE = frozenset(status.value for status in ACTIVE_STATUSES)
#: every status of an execution, as a document holds it
STATUSES = tuple(status.value for status in Status)


class PhaseStatus(StrEnum):
    """Status of one phase of an execution."""

    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"


#: every status of a phase, as a document holds it
PHASE_STATUSES = tuple(status.value for status in PhaseStatus)


class Trigger(StrEnum):
    """How an execution was triggered."""

    SCHEDULED = "scheduled"
    MANUAL = "manual"
    SUBSCRIPTION = "subscription"


#: every way an execution is triggered, as a document holds it
TRIGGERS = tuple(trigger.value for trigger in Trigger)


class Scope(StrEnum):
    """What an API token may do: `read` executions and processes; `run` processes (trigger,
    cancel) and read; `admin`: all that, and change processes (enable, disable, reschedule)."""

    READ = "read"
    RUN = "run"
    ADMIN = "admin"


SERVICE_NAME = "process-exec"
DEFAULT_ENVIRONMENT = "production"
PHASES = ("EXTRACT", "TRANSFORM", "SEND", "LOAD")
#: the phase that runs on the loader queue's workers, when SEND hands the batch over
LOAD_PHASE = "LOAD"
#: how the worker claim of a run whose batch waits for a loader begins: SEND's worker hands
#: its claim to a ticket, which the loader's task (and only it) exchanges for a claim of its own
LOADER_TICKET = "loader-queue#"
