"""Errors the engine raises; the API maps each to one HTTP status."""

from __future__ import annotations

#: the most characters of a client's input an error message repeats (`excerpt`)
EXCERPT_CHARS = 80


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """`value` as text for an error message: at most `limit` characters of it, characters that
    are not printable escaped as `repr` escapes them (`\\n`, `\\x00`), and `…` where it was cut.

    A message repeats what the client sent, so that it sees what was refused; a 10 MB name or
    query value must not come back whole (in the body and in the `x-odsl-error` header)."""
    text = str(value)
    shown: list[str] = []
    size = 0
    for char in text:
        piece = char if char.isprintable() else repr(char)[1:-1]
        if size + len(piece) > limit:
            return "".join(shown) + "…"
        shown.append(piece)
        size += len(piece)
    return "".join(shown)


def label(name: str) -> str:
    """A parameter's name as the error it names starts with it: as given when it is within
    `EXCERPT_CHARS`, else its `excerpt`."""
    return name if len(name) <= EXCERPT_CHARS else excerpt(name)


class ProcexecError(Exception):
    """Base of every error the engine raises on purpose."""

    status_code = 500


class BadRequest(ProcexecError):
    """The request is malformed; the message names what was wrong."""

    status_code = 400


class NotFound(ProcexecError):
    """An unknown process or execution."""

    status_code = 404


class StoreUnavailable(ProcexecError):
    """The execution store cannot be reached; nothing was written."""

    status_code = 503


class BrokerUnavailable(ProcexecError):
    """The broker did not take a task; the message, one line, names the broker (its password
    masked) and its error."""

    status_code = 503


class QueryTimeout(ProcexecError):
    """A read served by the API ran past its time limit (`Settings.read_timeout`) and was stopped.

    A 503 as `StoreUnavailable`, but its own class and message: the store is fine, and the same
    query would be stopped again; the caller narrows it."""

    status_code = 503

    def __init__(self, seconds: float) -> None:
        # here, not at the top: every engine module imports this one, and a process module
        # (`from procexec import Process`) needs no settings
        from procexec.engine.settings import Settings

        variable = Settings.env_name("read_timeout")
        super().__init__(
            f"query took longer than {seconds:g} s ({variable}); "
            "narrow the filters or add start=range(...)"
        )
        self.seconds = seconds


class DuplicateExecution(ProcexecError):
    """An execution with this id exists already (a second beat, a repeated subscription)."""

    status_code = 409


class Conflict(ProcexecError):
    """The execution is not in a state that allows the request (it has finished)."""

    status_code = 409
