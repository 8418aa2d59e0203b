"""`procexec rerun ID [--from PHASE]` and `procexec rerun --failed --since T [--until T]
[--process NAME] [--limit N] [--from PHASE]`: rerun an execution from its failed phase
(`engine.rerun`), or every failed run of a range, on a running service's store; the reruns
are dispatched through the service's broker.

One line per rerun made, `<old id> -> <new id> from <PHASE>`; a run refused is told on stderr
(`procexec: <old id>: <why>`). The exit status is 0 when every run asked for was rerun (or
had been already), 1 when some were refused, 2 for a mistake told in one line (no store, an
unknown execution or process, a rerun refused for the one run named).

With `--url` or `--token`, or both `PROCEXEC_URL` and `PROCEXEC_TOKEN` set, `procexec rerun
ID [--from PHASE] [--follow]` goes through the API instead (`procexec.client_cli`): the
token's user reruns, `--environment` is the run's environment; `--failed` works on the store
alone.
"""

from __future__ import annotations

import argparse
from typing import Any

from procexec import preflight
from procexec.client_cli import api_options, api_rerun, wants_api
from procexec.engine.audit import command_user
from procexec.engine.domain import DEFAULT_ENVIRONMENT
from procexec.engine.errors import BadRequest, ProcexecError
from procexec.engine.rerun import MAX_BATCH, rerun_execution, rerun_failed
from procexec.engine.settings import Settings
from procexec.engine.timeutil import iso_ms, parse_iso
from procexec.preflight import USAGE, fail
from procexec.service import build, existing_store

#: how many runs `--failed` reruns in one call unless `--limit` says otherwise
DEFAULT_BATCH = 20


def _moment(option: str, value: str) -> str:
    """A `--since` or `--until` value (an ISO date or date and time; UTC unless it says) in
    the documents' form."""
    try:
        return iso_ms(parse_iso(value))
    except ValueError:
        raise BadRequest(f"{option}: '{value}' is not an ISO date or date and time") from None


def cmd_rerun(args: argparse.Namespace) -> int:
    """Rerun one execution, or with `--failed` every failed run of a range; one execution
    through the API when one is named (`procexec.client_cli.wants_api`)."""
    if wants_api(args):
        return int(api_rerun(args))
    if args.follow or args.json:
        return fail("--follow and --json go through the API: give --url and --token", USAGE)
    if args.failed == (args.execution_id is not None):
        return fail("give an execution's id, or --failed --since T, not both", USAGE)
    if args.failed and args.since is None:
        return fail("--failed needs --since T (the start of the range)", USAGE)
    if not args.failed and (args.since or args.until or args.process or args.environment):
        return fail("--since, --until, --process and --environment go with --failed", USAGE)
    try:
        config = Settings.from_env()
        registry = preflight.processes(config)
        service = build(config, store=existing_store(config), registry=registry)
        if not args.failed:
            doc = rerun_execution(
                service.store,
                service.triggers,
                args.execution_id,
                user=args.user or command_user(),
                start_from=args.start_from,
            )
            print(f"{args.execution_id} -> {doc['_id']} from {_phase_of(doc)}")
            return 0
        since = _moment("--since", args.since)
        until = _moment("--until", args.until) if args.until else iso_ms()
        batch = rerun_failed(
            service.store,
            service.triggers,
            user=args.user or command_user(),
            since=since,
            until=until,
            environment=args.environment or DEFAULT_ENVIRONMENT,
            process=args.process,
            start_from=args.start_from,
            limit=args.limit,
        )
    except ProcexecError as exc:
        return fail(exc, USAGE)
    for old_id, new_id, phase in batch.made:
        print(f"{old_id} -> {new_id} from {phase}")
    for old_id, why in batch.refused:
        fail(f"{old_id}: {why}", 1)
    summary = (
        f"{len(batch.made)} rerun, {len(batch.refused)} refused, {batch.skipped} rerun already"
    )
    if batch.more:
        again = f"procexec rerun --failed --since {since} --until {until}"
        if args.process:
            again += f" --process {args.process}"
        summary += f"; more remain: {again}"
    print(summary)
    return 1 if batch.refused else 0


def _phase_of(doc: dict[str, Any]) -> str:
    return str(doc["reason"]).rsplit(" from ", 1)[-1]


def add_rerun_command(commands: Any) -> None:
    """Add `procexec rerun` to the command's subparsers."""
    rerun = commands.add_parser(
        "rerun",
        help="rerun an execution from its failed phase, or every failed run since a time",
    )
    rerun.add_argument("execution_id", nargs="?", help="the execution to rerun")
    rerun.add_argument(
        "--from",
        dest="start_from",
        metavar="PHASE",
        help="the phase to start from instead of the failed one; `start` runs every phase",
    )
    rerun.add_argument("--failed", action="store_true", help="every failed run of a range")
    rerun.add_argument("--since", metavar="T", help="with --failed: runs started at T or later")
    rerun.add_argument(
        "--until", metavar="T", help="with --failed: runs started before T (default: now)"
    )
    rerun.add_argument("--process", metavar="NAME", help="with --failed: this process's alone")
    rerun.add_argument(
        "--environment",
        help=f"with --failed: the runs of this environment (default {DEFAULT_ENVIRONMENT})",
    )
    rerun.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_BATCH,
        help=f"with --failed: at most N reruns (default {DEFAULT_BATCH}, at most {MAX_BATCH})",
    )
    rerun.add_argument(
        "--user",
        help="who reruns (its runAs, and in the audit trail; default cli:<your OS user>, as the "
        "other commands on the store)",
    )
    api_options(rerun, follow=True, environment=False)  # its --environment, the API's too
    rerun.set_defaults(handler=cmd_rerun)
