"""The service's own log lines (`PROCEXEC_LOG_FORMAT`): text, as before, or one JSON object a
line, each with the execution id and process name of the run it concerns where there is one.

A worker names the run it is working on with `run_logged` around it; every line logged in that
thread meanwhile (the runner's, the recorder's, a phase's own `logging` calls, Celery's task
logger) carries it. A line may also name its run itself (`extra={"execution_id": …}`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

LogFormat = Literal["text", "json"]
#: the text lines' layout (`PROCEXEC_LOG_FORMAT=text`, the default)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class LogFields(BaseModel):
    """The log setting, a field of `engine.settings.Settings`."""

    log_format: LogFormat = Field(
        "text",
        description="the service's own log lines: `text`, or `json` (one object a line, with "
        "the execution id and process name of the run it concerns)",
    )


#: the run the current thread is working on: its execution id and process name
_RUN: ContextVar[tuple[str, str | None] | None] = ContextVar("procexec_run", default=None)


@contextmanager
def run_logged(execution_id: str, process: str | None) -> Iterator[None]:
    """Every line this thread logs meanwhile names this run."""
    token = _RUN.set((execution_id, process))
    try:
        yield
    finally:
        _RUN.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, milliseconds), level, logger, message, and where
    there is one, the run's `execution_id` and `process`, and the exception's traceback."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, object] = {
            "time": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        run = _RUN.get() or _celery_task(record)
        execution_id = getattr(record, "execution_id", None) or (run and run[0])
        process = getattr(record, "process_name", None) or (run and run[1])
        if execution_id:
            entry["execution_id"] = str(execution_id)
        if process:
            entry["process"] = str(process)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


def _celery_task(record: logging.LogRecord) -> tuple[str, str | None] | None:
    """The run of a Celery line about a `procexec.run` task (received, succeeded, raised):
    Celery passes the task's id, the execution id, and name as the line's arguments."""
    args = record.args
    if isinstance(args, Mapping) and args.get("name") == "procexec.run" and args.get("id"):
        return str(args["id"]), None
    return None


def configure_logging(level: str, log_format: LogFormat = "text") -> None:
    """The root logger's one handler, on stderr, in `log_format`; replaces any set before."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def follow_root_format() -> None:
    """Where the root's lines are JSON, so are those of the handlers a library made of its own
    (Celery's task logger): call it once they are made."""
    root = logging.getLogger()
    if not any(isinstance(handler.formatter, JsonFormatter) for handler in root.handlers):
        return
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            for handler in logger.handlers:
                if not isinstance(handler.formatter, JsonFormatter):
                    handler.setFormatter(JsonFormatter())
