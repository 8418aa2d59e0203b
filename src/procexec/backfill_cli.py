"""`procexec process backfill NAME --from T --to T [--dry-run]`: the runs a process's schedule
would have made over a past range (`engine.backfill`), made on the service's store and sent
through its broker."""

from __future__ import annotations

import argparse
import sys

from procexec.engine.backfill import EXISTED, MADE, MAX_FIRES, NEW, REFUSED, SEND_PAUSE
from procexec.preflight import USAGE, fail

#: how each state is shown
SHOWN = {MADE: "made", EXISTED: "existed already", NEW: "to make", REFUSED: "refused"}


def add_backfill_command(
    process_commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """`backfill` among the `procexec process` commands."""
    help_text = (
        "make the runs a process's schedule would have made from --from (included) to --to "
        "(not included): one per fire time, each the beat's own run (trigger scheduled, its "
        f"reason and id), made only where none exists; at most {MAX_FIRES} fire times, sent "
        f"{SEND_PAUSE * 1000:g} ms apart; prints one line per fire time"
    )
    sub = process_commands.add_parser("backfill", help=help_text, description=help_text)
    sub.add_argument("name")
    sub.add_argument(
        "--from",
        dest="start",
        required=True,
        metavar="TIME",
        help="ISO 8601 (2021-07-01, 2021-07-01T06:00:00+02:00); without an offset, UTC",
    )
    sub.add_argument(
        "--to",
        dest="end",
        required=True,
        metavar="TIME",
        help="ISO 8601, not included (a day: --from 2021-07-01 --to 2021-07-02); not after now",
    )
    sub.add_argument(
        "--dry-run", action="store_true", help="list the fire times and which runs exist; make none"
    )
    sub.set_defaults(handler=cmd_backfill)


def cmd_backfill(args: argparse.Namespace) -> int:
    """One line per fire time: its time, its run's id, made / existed already (`to make` in a
    dry run) / refused and why; exit 1 when a run was refused."""
    from procexec import preflight
    from procexec.engine.audit import command_user
    from procexec.engine.backfill import BackfillService
    from procexec.engine.errors import ProcexecError
    from procexec.engine.settings import Settings
    from procexec.engine.timeutil import iso_ms
    from procexec.service import build, existing_store

    try:
        config = Settings.from_env()
        registry = preflight.processes(config)
        service = build(config, store=existing_store(config), registry=registry)
        filler = BackfillService(service.store, service.registry, service.triggers)
        done = filler.backfill(
            args.name, args.start, args.end, who=command_user(), dry_run=args.dry_run
        )
    except ProcexecError as exc:
        return fail(exc, USAGE)
    for run in done.runs:
        why = f": {run.message}" if run.message else ""
        print(f"{iso_ms(run.fire)}  {run.id}  {SHOWN[run.state]}{why}", flush=True)
    counts = ", ".join(
        f"{done.count(state)} {SHOWN[state]}"
        for state in ((NEW, EXISTED) if done.dry_run else (MADE, EXISTED, REFUSED))
    )
    print(
        f"{done.process}: {counts} ({iso_ms(done.start)} to {iso_ms(done.end)}, not included)"
        + (" [dry run]" if done.dry_run else ""),
        file=sys.stderr,
    )
    return 1 if done.count(REFUSED) else 0
