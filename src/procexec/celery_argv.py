"""The arguments procexec hands to Celery's own commands: what the user gave, and procexec's
defaults for what they left unset."""

from __future__ import annotations

from collections.abc import Sequence


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
