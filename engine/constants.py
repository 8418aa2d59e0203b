"""Statuses, environment variable names and defaults, in one place."""

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


class PhaseStatus(StrEnum):
    """Status of one phase of an execution."""

    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"


class Trigger(StrEnum):
    """How an execution was triggered."""

    SCHEDULED = "scheduled"
    MANUAL = "manual"
    SUBSCRIPTION = "subscription"


class Scope(StrEnum):
    """What an API token may do; `run` implies `read`."""

    READ = "read"
    RUN = "run"


SERVICE_NAME = "process-exec"
DEFAULT_ENVIRONMENT = "production"
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
#: most values one `_distinct` answers with, buckets one `_fieldinfo`, rows one `_aggregate`
MAX_DISTINCT = 10_000
PHASES = ("EXTRACT", "TRANSFORM", "SEND", "LOAD")

# Environment variables
ENV_DATA_DIR = "PROCEXEC_DATA_DIR"
ENV_STORE_URL = "PROCEXEC_STORE_URL"
ENV_BROKER_URL = "PROCEXEC_BROKER_URL"
ENV_PROCESSES = "PROCEXEC_PROCESSES"
ENV_EXAMPLES = "PROCEXEC_EXAMPLES"
ENV_LOG_FLUSH_INTERVAL = "PROCEXEC_LOG_FLUSH_INTERVAL"
ENV_LOST_RUN_TIMEOUT = "PROCEXEC_LOST_RUN_TIMEOUT"
ENV_REDISPATCH_AFTER = "PROCEXEC_REDISPATCH_AFTER"
ENV_MAX_LOG_LINES = "PROCEXEC_MAX_LOG_LINES"
ENV_READ_TIMEOUT = "PROCEXEC_READ_TIMEOUT_SECONDS"

DEFAULT_DATA_DIR = ".procexec"
#: seconds between two flushes of buffered log lines to the store
DEFAULT_LOG_FLUSH_INTERVAL = 0.25
#: seconds without a heartbeat after which a run's worker is taken for dead
DEFAULT_LOST_RUN_TIMEOUT = 60.0
#: seconds after which a run still `triggered` is sent to the workers again
DEFAULT_REDISPATCH_AFTER = 60.0
#: log lines kept per phase (first half and latest lines, with a marker between)
DEFAULT_MAX_LOG_LINES = 1000
#: seconds an API read (a list call, one execution) may run before it is stopped with a 503
DEFAULT_READ_TIMEOUT = 10.0
