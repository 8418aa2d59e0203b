"""The arguments procexec hands to Celery's own commands: what the user gave, and procexec's
defaults for what they left unset."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from procexec.engine.errors import excerpt


def given(options: Sequence[str], *names: str) -> bool:
    """Whether `options` sets any of `names` (`-c 4`, `-c4`, `--concurrency=4` …)."""
    return any(
        option == name or option.startswith(name + "=" if name.startswith("--") else name)
        for option in options
        for name in names
    )


def worker_argv(log_level: str, options: Sequence[str], loader_queue: str) -> list[str]:
    """`celery worker`'s arguments: procexec's defaults for what `options` leaves unset (the
    prefork pool, 2 processes, the run queue and the loader queue), then `options` as they
    are."""
    from procexec.workers.celery_app import QUEUE

    argv = ["worker", f"--loglevel={log_level}", "--without-mingle", "--without-gossip"]
    if not given(options, "-P", "--pool"):
        argv.append("--pool=prefork")
    if not given(options, "-c", "--concurrency", "--autoscale"):
        argv.append("--concurrency=2")
    if not given(options, "-Q", "--queues"):
        argv.append(f"--queues={QUEUE},{loader_queue}" if loader_queue else f"--queues={QUEUE}")
    return [*argv, *options]


def flower_argv(options: Sequence[str]) -> list[str]:
    """Flower's options as Flower reads them: `--port=5555`, where Celery's own commands (and
    `procexec flower --port 5555`) may give the value as the next argument. A flag of Flower's
    (`--debug`) and what is not one of its options pass as they are."""
    import flower.options  # noqa: F401  (defines Flower's options in tornado's)
    from tornado.options import options as defined

    valued = {name for name, option in defined._options.items() if option.type is not bool}
    argv: list[str] = []
    rest = list(options)
    while rest:
        option = rest.pop(0)
        name = option[2:].replace("_", "-")
        if option.startswith("--") and name in valued and rest and not rest[0].startswith("--"):
            option = f"{option}={rest.pop(0)}"
        argv.append(option)
    return argv


def check_flower_argv(argv: Sequence[str]) -> None:
    """Each of `argv` (as `flower_argv` wrote it) one of Flower's options, with a value it can
    read; else a `ValueError` whose one line names the option. Flower itself passes over an
    option it does not know in silence, and a value it cannot read is a traceback."""
    import flower.options  # noqa: F401  (defines Flower's options in tornado's)
    from tornado.options import Error
    from tornado.options import options as defined

    known = defined._options
    for arg in argv:
        name, equals, value = arg.removeprefix("--").partition("=")
        key = name.replace("_", "-")
        if not arg.startswith("--") or key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" (did you mean --{close[0]}?)" if close else ""
            raise ValueError(f"flower: {excerpt(arg)} is not an option of Flower's{hint}")
        option = known[key]
        if option.type is bool and not equals:
            continue
        if not equals:
            raise ValueError(f"flower: --{name} needs a value (--{name}=VALUE)")
        try:
            option.parse(value)
        except (Error, ValueError, TypeError):
            kind = {int: "a whole number", float: "a number"}.get(option.type, "a value it reads")
            raise ValueError(f"flower: --{name}: {excerpt(value)!r} is not {kind}") from None
