"""The commands that talk to a running API (`procexec.client`): `trigger`, `list`, `show`,
`tail`, and `cancel` and `rerun` when an API is named (`--url` or `--token`, or both
`PROCEXEC_URL` and `PROCEXEC_TOKEN`; else those two work on the store directly, as before).

Exit statuses: 0 success (a run that ended `success` or `warning`, with `--follow` or `tail`),
1 a followed run that ended otherwise (`failed`), 2 a usage or connection error, told in one
line: the URL unreachable, or the API's refusal with its message (`procexec: 401: …`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from procexec.client import ApiClient, ClientError, settings
from procexec.client_view import Follow, run_whole, runs_table
from procexec.preflight import USAGE, Refused, fail
from procexec.run_cli import parameters

#: the outcomes exit status 0 stands for
PASSED = frozenset({"success", "warning"})


def wants_api(args: argparse.Namespace) -> bool:
    """Whether `cancel` or `rerun` go through the API: `--url` or `--token` given, or both
    `PROCEXEC_URL` and `PROCEXEC_TOKEN` set. `PROCEXEC_URL` alone (set for curl, as the docs'
    examples do) leaves them on the store, as they were before the client."""
    if getattr(args, "url", None) or getattr(args, "token", None):
        return True
    return bool(os.environ.get("PROCEXEC_URL") and os.environ.get("PROCEXEC_TOKEN"))


def _client(args: argparse.Namespace) -> ApiClient:
    base, token = settings(args.url, args.token)
    return ApiClient(base, token, environment=args.environment)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _guarded(command: Any) -> Any:
    """A command whose `ClientError` and `Refused` are one line and exit status 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return int(command(args))
        except (ClientError, Refused) as exc:
            return fail(exc, USAGE)
        except BrokenPipeError:  # `| head`: the reader left
            return 0

    run.__doc__ = command.__doc__
    return run


def follow(client: ApiClient, execution_id: str, as_json: bool) -> int:
    """Show a run's events until it ends; 0 when it ended `success` or `warning`, else 1."""
    view = Follow(execution_id, sys.stdout, as_json=as_json)
    for event in client.events(f"/v1/{execution_id}/events"):
        view.show(event)
        if event.kind == "end":
            return 0 if event.data.get("status") in PASSED else 1
    return 1  # not reached: `events` raises once it gives up


@_guarded
def cmd_trigger(args: argparse.Namespace) -> int:
    """Trigger a process; with --follow, follow its run until it ends."""
    body = parameters(args.param or [])
    client = _client(args)
    payload: dict[str, Any] = {"name": args.name, "body": body}
    if args.reason:
        payload["_reason"] = args.reason
    doc, _ = client.call("POST", "/v1", body=payload)
    if args.json and not args.follow:
        _print_json(doc)
    elif not args.json:
        print(f"{doc['_id']}: {doc.get('status')} ({doc.get('name')})", flush=True)
    if args.follow:
        return follow(client, doc["_id"], args.json)
    return 0


def _query(pairs: list[str]) -> list[tuple[str, str]]:
    params = []
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name:
            raise Refused(
                f"{pair!r}: expected PARAM=VALUE (as the list call's query: status=failed)"
            )
        params.append((name, value))
    return params


@_guarded
def cmd_list(args: argparse.Namespace) -> int:
    """List runs: the list call's query parameters as they are."""
    docs, headers = _client(args).call("GET", "/v1", _query(args.query))
    if args.json:
        _print_json(docs)
    elif isinstance(docs, list):
        runs_table(docs, headers.get("x-total-count"), sys.stdout)
    else:  # `_distinct`, `_fieldinfo`, `_aggregate`: their answers as they are
        _print_json(docs)
    return 0


@_guarded
def cmd_show(args: argparse.Namespace) -> int:
    """One run whole, its parameters included."""
    doc, _ = _client(args).call("GET", f"/v1/{_id(args.execution_id)}", [("_params", "true")])
    if args.json:
        _print_json(doc)
    else:
        run_whole(doc, sys.stdout)
    return 0


@_guarded
def cmd_tail(args: argparse.Namespace) -> int:
    """Follow a run until it ends."""
    return follow(_client(args), _id(args.execution_id), args.json)


@_guarded
def api_cancel(args: argparse.Namespace) -> int:
    """`procexec cancel ID` through the API (the token's user cancels)."""
    doc, _ = _client(args).call("POST", f"/v1/{_id(args.execution_id)}/cancel")
    if args.json:
        _print_json(doc)
    else:
        print(f"{doc['_id']}: {doc['status']} ({doc.get('message')})")
    return 0


@_guarded
def api_rerun(args: argparse.Namespace) -> int:
    """`procexec rerun ID [--from PHASE]` through the API (the token's user reruns)."""
    if args.failed or args.execution_id is None:
        raise Refused(
            "through the API, rerun takes one execution's id "
            "(--failed works on the store: without --url, --token or PROCEXEC_TOKEN)"
        )
    params = [("from", args.start_from)] if args.start_from else []
    client = _client(args)
    doc, _ = client.call("POST", f"/v1/{_id(args.execution_id)}/rerun", params)
    if args.json and not args.follow:
        _print_json(doc)
    elif not args.json:
        phase = str(doc.get("reason") or "").rsplit(" from ", 1)[-1] or "-"
        print(f"{args.execution_id} -> {doc['_id']} from {phase}", flush=True)
    if args.follow:
        return follow(client, doc["_id"], args.json)
    return 0


def _id(execution_id: str) -> str:
    if not execution_id or "/" in execution_id or execution_id.strip() != execution_id:
        raise Refused(f"{execution_id!r} is not an execution id")
    return execution_id


def api_options(
    sub: argparse.ArgumentParser, *, follow: bool = False, environment: bool = True
) -> None:
    """The options of a command that talks to the API."""
    sub.add_argument("--url", help="the API's root, e.g. http://127.0.0.1:8080 (PROCEXEC_URL)")
    sub.add_argument("--token", help="an API token (PROCEXEC_TOKEN); never printed")
    if environment:
        sub.add_argument("--environment", help="the x-odsl-environment (default production)")
    sub.add_argument("--json", action="store_true", help="machine-readable output (JSON)")
    if follow:
        sub.add_argument(
            "--follow",
            action="store_true",
            help="follow the run until it ends (exit 1 unless it succeeds)",
        )


def add_client_commands(commands: Any) -> None:
    """Add `trigger`, `list`, `show` and `tail` to the command's subparsers."""
    trigger = commands.add_parser("trigger", help="trigger a process through the API")
    trigger.add_argument("name", help="the process")
    trigger.add_argument(
        "--param", action="append", metavar="KEY=VALUE", help="a parameter (JSON, else a string)"
    )
    trigger.add_argument("--reason", help="why (the run's reason)")
    api_options(trigger, follow=True)
    trigger.set_defaults(handler=cmd_trigger)

    listing = commands.add_parser(
        "list",
        help="list runs through the API: the list call's parameters (status=failed _limit=5)",
    )
    listing.add_argument("query", nargs="*", metavar="PARAM=VALUE")
    api_options(listing)
    listing.set_defaults(handler=cmd_list)

    show = commands.add_parser("show", help="one run through the API, its parameters included")
    show.add_argument("execution_id")
    api_options(show)
    show.set_defaults(handler=cmd_show)

    tail = commands.add_parser("tail", help="follow a run through the API until it ends")
    tail.add_argument("execution_id")
    api_options(tail)
    tail.set_defaults(handler=cmd_tail)
