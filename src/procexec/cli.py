"""The `procexec` command: standalone, api, worker, beat, flower, process, cancel, store check,
token create, list and revoke (`procexec.token_cli`), run (`procexec.run_cli`), rerun
(`procexec.rerun_cli`), process backfill (`procexec.backfill_cli`), audit
(`procexec.audit_cli`), and the API's client: trigger, list, show, tail, and cancel and rerun
when an API is named (`procexec.client_cli`)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from procexec import preflight
from procexec.audit_cli import add_audit_command
from procexec.backfill_cli import add_backfill_command
from procexec.celery_argv import check_flower_argv, flower_argv, given, worker_argv
from procexec.client_cli import add_client_commands, api_cancel, api_options, wants_api
from procexec.engine.log_format import configure_logging
from procexec.engine.private_files import private_umask
from procexec.engine.redact import redact_logging
from procexec.engine.settings import Settings, SettingsError
from procexec.limit_cli import add_limit_command, limit_process
from procexec.preflight import INTERRUPTED, USAGE, Refused, fail
from procexec.rerun_cli import add_rerun_command
from procexec.run_cli import add_run_command
from procexec.service import Service, build, existing_store
from procexec.standalone import cmd_standalone
from procexec.token_cli import add_token_commands

if TYPE_CHECKING:
    from procexec.engine.process import ProcessRegistry

logger = logging.getLogger("procexec")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def _existing_service() -> Service:
    """The service of the environment's settings, on a store a service has made (or
    `StoreMissing`)."""
    config = Settings.from_env()
    registry = preflight.processes(config)
    return build(config, store=existing_store(config), registry=registry)


def _ready(listen: tuple[str, int] | None = None) -> tuple[Settings, ProcessRegistry]:
    """A service command's settings and processes, the port it is to `listen` on free, its
    data folder made; or `Refused`, with nothing made."""
    config = Settings.from_env()
    registry = preflight.processes(config)
    if listen is not None:
        preflight.listening_socket(*listen).close()
    preflight.data_folder(config)
    return config, registry


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    _ready(listen=(args.host, args.port))  # a port taken: one line, not uvicorn's
    preflight.exit_on_signals()  # uvicorn stops on them, then they end the command (130, 143)
    from procexec.api.server import BoundedHttpProtocol, uvicorn_log_config

    uvicorn.run(
        "procexec.api.app:app_factory",
        factory=True,
        http=BoundedHttpProtocol,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level.lower(),
        log_config=uvicorn_log_config(Settings.from_env().log_format),
    )
    return 0


#: the commands whose other options go to Celery's (or Flower's) own command as they are
PASS_THROUGH = ("worker", "beat", "flower")


def cmd_worker(args: argparse.Namespace) -> int:
    """A Celery worker: every `celery worker` option passes through (-n, -Q, -c, -P …)."""
    _ready()  # fail now, not on every task (which would leave the executions `triggered`)
    from procexec.workers.tasks import app

    settings = app.conf.procexec_settings
    app.worker_main(worker_argv(args.log_level, args.celery_options, settings.loader_queue))
    return 0


def cmd_beat(args: argparse.Namespace) -> int:
    """The beat: every `celery beat` option passes through."""
    config, _ = _ready()
    from procexec.workers.tasks import app

    argv = ["beat", f"--loglevel={args.log_level}"]
    if not given(args.celery_options, "-s", "--schedule"):
        argv.append(f"--schedule={config.data_dir / 'celerybeat-schedule'}")
    if not given(args.celery_options, "-S", "--scheduler"):
        argv.append("--scheduler=procexec.workers.beat:ProcessScheduler")
    app.start([*argv, *args.celery_options])
    return 0


def cmd_flower(args: argparse.Namespace) -> int:
    """Flower on procexec's Celery app: every Flower option passes through (--port,
    --basic-auth …), spelt `--port=5555` (Flower's) or `--port 5555` (Celery's)."""
    preflight.data_folder(Settings.from_env())
    from procexec.workers.tasks import app

    argv = flower_argv(args.celery_options)
    try:
        check_flower_argv(argv)
    except ValueError as exc:
        raise Refused(str(exc)) from None
    app.start(["flower", f"--loglevel={args.log_level}", *argv])
    return 0


def _shown_limit(item: dict[str, Any]) -> str:
    """The limit that holds, as the process list shows it: `2`, `1 per date`, `-` (none)."""
    if item.get("maxRunning") is None:
        return "-"
    key = item.get("limitKey")
    return f"{item['maxRunning']} per {key}" if key else str(item["maxRunning"])


def cmd_process(args: argparse.Namespace) -> int:
    """List, enable, disable, reschedule or limit processes (a running beat sees it within
    seconds)."""
    import json

    from procexec.engine.audit import command_user
    from procexec.engine.errors import ProcexecError
    from procexec.engine.scheduler import change_process, describe, effective

    try:
        service = _existing_service()
        store, registry = service.store, service.registry
        if args.process_command == "list":
            states = store.process_states()
            items = [describe(effective(p, states.get(p.name))) for p in registry]
            if args.json:
                print(json.dumps(items, indent=2))
                return 0
            print(
                f"{'NAME':<20} {'ENABLED':<8} {'SCHEDULE':<18} {'TIMEZONE':<16} "
                f"{'MAX RUNNING':<16} NEXT FIRE"
            )
            for item in items:
                enabled = "yes" if item["enabled"] else "no"
                print(
                    f"{item['name']:<20} {enabled:<8} {item['schedule'] or '-':<18} "
                    f"{item['timezone']:<16} {_shown_limit(item):<16} {item['nextFire'] or '-'}"
                )
            return 0
        if args.process_command == "limit":
            return limit_process(store, registry, args.name, args.limit)
        if args.process_command in ("enable", "disable"):
            changed = change_process(
                store,
                registry,
                args.name,
                enabled=args.process_command == "enable",
                who=command_user(),
            )
        else:
            changed = change_process(
                store,
                registry,
                args.name,
                schedule=args.crontab,
                timezone=args.timezone,
                who=command_user(),
            )
    except ProcexecError as exc:
        return fail(exc, USAGE)
    item = describe(changed)
    print(
        f"{item['name']}: {'enabled' if item['enabled'] else 'disabled'}, "
        f"schedule {item['schedule'] or '-'} ({item['timezone']}), "
        f"next fire {item['nextFire'] or '-'}"
    )
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel a triggered or running execution; its worker stops within a heartbeat. Through
    the API when one is named (`procexec.client_cli.wants_api`), else on the store directly."""
    if wants_api(args):
        return int(api_cancel(args))
    from procexec.engine.audit import command_user
    from procexec.engine.cancellation import cancel_execution
    from procexec.engine.errors import ProcexecError

    try:
        service = _existing_service()
        doc = cancel_execution(
            service.store,
            args.execution_id,
            user=args.user or command_user(),
            revoke=service.revoke,
        )
    except ProcexecError as exc:
        return fail(exc, USAGE)
    if args.json:
        import json

        print(json.dumps(doc, indent=2))
        return 0
    print(f"{doc['_id']}: {doc['status']} ({doc['message']})")
    return 0


def cmd_store_check(args: argparse.Namespace) -> int:
    """The configured store's health: 0 healthy, 1 not answering or missing indexes, 2 no
    store there (a service makes it) or a URL procexec does not take."""
    from procexec.engine.errors import ProcexecError, StoreUnavailable
    from procexec.engine.store import StoreReport
    from procexec.storecheck import as_json, as_text, kind_of

    config = Settings.from_env()
    url = config.store_url
    try:
        store = existing_store(config, prepare=False, timeout=args.timeout)
        try:
            report = store.check(args.timeout)
        finally:
            store.close()
    except StoreUnavailable as exc:  # asked whether the database is there, it did not answer
        report = StoreReport(kind_of(url), reachable=False, error=str(exc))
    except (ValueError, ProcexecError) as exc:
        return fail(exc, USAGE)
    print(as_json(url, report) if args.json else as_text(url, report))
    return 0 if report.healthy else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="procexec", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        sub.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
        return sub

    def serve_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--host", default=DEFAULT_HOST, help=f"default {DEFAULT_HOST}")
        sub.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")

    def worker_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--concurrency", type=int, default=2, help="runs at once (default 2)")
        sub.add_argument(
            "--pool", default="prefork", choices=["prefork", "threads", "solo"], help="Celery pool"
        )

    standalone = add("standalone", "API, worker and beat in one command")
    serve_options(standalone)
    worker_options(standalone)
    standalone.add_argument("--user", default="admin", help="user of its admin token")
    standalone.add_argument(
        "--print-token",
        action="store_true",
        help="print the admin token whole in the banner (by default its beginning and its file)",
    )
    standalone.set_defaults(handler=cmd_standalone)

    api = add("api", "the REST API (uvicorn)")
    serve_options(api)
    api.add_argument(
        "--workers", type=int, default=None, help="API processes (uvicorn's; default 1)"
    )
    api.set_defaults(handler=cmd_api)

    worker = add(
        "worker",
        "a Celery worker that runs executions; every `celery worker` option passes through "
        "(-n NAME, -Q QUEUES, -c N, -P POOL, --autoscale, --max-tasks-per-child …); by "
        "default the prefork pool, 2 processes and the run queue",
    )
    worker.set_defaults(handler=cmd_worker)

    beat = add(
        "beat",
        "the Celery beat scheduler (schedules and housekeeping); `celery beat` options pass "
        "through",
    )
    beat.set_defaults(handler=cmd_beat)

    flower = add(
        "flower",
        "Flower, the Celery monitor, on procexec's app; Flower's options pass through "
        "(--port=5555, --basic-auth=user:password …)",
    )
    flower.set_defaults(handler=cmd_flower)

    process = commands.add_parser(
        "process", help="list, enable, disable, reschedule, limit or backfill processes"
    )
    process_commands = process.add_subparsers(dest="process_command", required=True)
    listing = process_commands.add_parser("list", help="the processes and their schedules")
    listing.add_argument("--json", action="store_true", help="as JSON")
    for verb in ("enable", "disable"):
        sub = process_commands.add_parser(verb, help=f"{verb} a process's scheduled runs")
        sub.add_argument("name")
    schedule = process_commands.add_parser("schedule", help="set a process's crontab")
    schedule.add_argument("name")
    schedule.add_argument("crontab", help='five fields, e.g. "30 16 * * 1-5"')
    schedule.add_argument("--timezone", help="an IANA timezone, e.g. Europe/London")
    add_limit_command(process_commands)
    process.set_defaults(handler=cmd_process)
    add_backfill_command(process_commands)  # its own handler

    cancel = commands.add_parser("cancel", help="cancel a triggered or running execution")
    cancel.add_argument("execution_id")
    cancel.add_argument(
        "--user",
        help="who cancels (shown in it, and in the audit trail; default cli:<your OS user>, as "
        "the other commands on the store)",
    )
    api_options(cancel)
    cancel.set_defaults(handler=cmd_cancel)

    store = commands.add_parser("store", help="the store of PROCEXEC_STORE_URL")
    store_commands = store.add_subparsers(dest="store_command", required=True)
    check = store_commands.add_parser(
        "check",
        help="whether the store answers, its indexes (present or missing) and its counts; "
        "exit 0 healthy, 1 not answering or indexes missing, 2 no store there",
    )
    check.add_argument("--json", action="store_true", help="as JSON")
    check.add_argument(
        "--timeout", type=float, default=5.0, help="seconds the store has to answer (default 5)"
    )
    check.set_defaults(handler=cmd_store_check)

    add_token_commands(commands)
    add_run_command(commands)
    add_rerun_command(commands)
    add_audit_command(commands)
    add_client_commands(commands)
    return parser


#: a command whose reader went away (`| head`), as a shell reports one ended by SIGPIPE
BROKEN_PIPE = 141


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in PASS_THROUGH:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.celery_options = extra
    private_umask()  # what every command makes is its user's alone (engine.private_files)
    level = getattr(args, "log_level", "INFO")
    configure_logging(level)  # text until the settings are read
    redact_logging()
    try:
        settings = Settings.from_env()  # a setting procexec cannot use stops every command here
        if settings.log_format != "text":
            configure_logging(level, settings.log_format)
            redact_logging()
        return int(args.handler(args) or 0)
    except SettingsError as exc:
        return fail(exc, USAGE)
    except Refused as exc:
        return fail(exc, exc.status)
    except click.ClickException as exc:  # an option Celery's command does not take
        return fail(exc.format_message(), USAGE)
    except KeyboardInterrupt:  # Ctrl-C: stopped as asked, nothing to explain
        return INTERRUPTED
    except BrokenPipeError:  # `procexec audit | head`: the reader stopped reading
        # what is left goes nowhere (Python's own advice): no second error when it exits
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
