"""`procexec run NAME [--param KEY=VALUE]… [--module M]… [--store URL] [--environment E]`: one
run of a process here, in this command, without a service (`procexec.local`).

The processes are those of the installed plugins and of `PROCEXEC_PROCESSES`, as a service's,
and those of the `--module`s (import paths, the current folder first on `sys.path`). The run
goes to a temporary SQLite store, removed afterwards, unless `--store URL` names one (made if it
is not there): never to the service's store of `PROCEXEC_STORE_URL` or `PROCEXEC_DATA_DIR`.

Its phases and log lines are printed as they happen (the run's change journal, followed by a
thread while the run goes on in the main one), then its outcome; the exit status is 0 for
`success` or `warning`, 1 for `failed` (or any other end), 2 for a mistake told in one line:
an unknown process, a parameter the process refuses, a module that cannot be imported.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import re
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from procexec import preflight
from procexec.engine.domain import DEFAULT_ENVIRONMENT, Status
from procexec.engine.process import ProcessRegistry
from procexec.engine.settings import Settings
from procexec.engine.store.base import ExecutionStore
from procexec.preflight import USAGE, Refused, fail

#: the outcomes a run's exit status 0 stands for
PASSED = frozenset({Status.SUCCESS.value, Status.WARNING.value})
#: the seconds between two reads of the run's change journal
POLL_INTERVAL = 0.05

_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\S+Z\[UTC\] ")
_PHASE_KEY = re.compile(r"^phases\.(\d+)(?:\.(\w+))?$")
_ENVIRONMENT = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")


def parameters(pairs: Sequence[str]) -> dict[str, Any]:
    """`KEY=VALUE` pairs as a trigger's body: a value is read as JSON when it is JSON
    (`sleep=0.5`, `flag=true`, `ids=[1,2]`), else taken as the string it is (`who=world`)."""
    body: dict[str, Any] = {}
    for pair in pairs:
        key, equals, text = pair.partition("=")
        if not equals or not key.strip():
            raise Refused(f"--param {pair!r}: expected KEY=VALUE")
        try:
            value: Any = json.loads(text)
        except ValueError:
            value = text
        body[key.strip()] = value
    return body


def _registry(modules: Sequence[str]) -> ProcessRegistry:
    """The plugins' processes and `PROCEXEC_PROCESSES`' (as a service's), then the
    `--module`s', each module importable (or `Refused`, naming it)."""
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # `--module hello` for ./hello.py, as `python -m` does
    registry = preflight.processes(Settings.from_env())
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            hint = f" (an import path: {name[:-3]!r}, not a file)" if name.endswith(".py") else ""
            raise Refused(f"--module: cannot import module {name!r}: {exc}{hint}") from None
        except Exception as exc:  # its own code failed: its error, in one line
            raise Refused(
                f"--module: importing module {name!r} failed: {type(exc).__name__}: {exc}"
            ) from None
        try:
            found = registry.add_module(module)
        except ValueError as exc:  # two processes of one name, a process without phases
            raise Refused(f"--module {name!r}: {exc}") from None
        if found == 0:
            raise Refused(f"--module: module {name!r} defines no Process")
    return registry


class Follower:
    """Prints a run's phases and log lines from its change journal, as they are written."""

    def __init__(self, store: ExecutionStore, execution_id: str) -> None:
        self.store = store
        self.execution_id = execution_id
        self.after = 0
        #: phase names by index, as the journal begins them
        self.names: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="procexec-run-follow", daemon=True)

    def __enter__(self) -> Follower:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.drain()  # what the last writes added

    def _main(self) -> None:
        try:
            while not self._stop.wait(POLL_INTERVAL):
                self.drain()
        finally:
            self.store.release_thread()

    def drain(self) -> None:
        for number, entry in self.store.changes(self.execution_id, self.after):
            self.after = number
            self.show(entry)

    def show(self, entry: Mapping[str, Any]) -> None:
        """One journal entry, phase by phase: a phase begun, its new lines, its end."""
        begun: dict[int, str] = {}
        fields: dict[int, dict[str, Any]] = {}
        for opening in (entry.get("push") or {}).get("phases") or []:  # begun by the claim
            begun[len(self.names) + len(begun)] = str(opening.get("name"))
        for key, value in (entry.get("set") or {}).items():
            match = _PHASE_KEY.match(key)
            if match is None:
                continue
            index = int(match[1])
            if match[2] is None and isinstance(value, Mapping):
                begun[index] = str(value.get("name"))
            elif match[2] is not None:
                fields.setdefault(index, {})[match[2]] = value
        lines = {int(index): texts for index, texts in (entry.get("lines") or {}).items()}
        failed_running = entry.get("failRunning")
        for index in sorted({*begun, *fields, *lines}):
            if index in begun:
                self.names[index] = begun[index]
                _say(f"{begun[index]} started")
            name = self.names.get(index, f"phase {index + 1}")
            for line in lines.get(index, ()):
                for part in _STAMP.sub("", line).splitlines() or [""]:  # a traceback's lines
                    _say(f"  {name} | {part}")
            status = fields.get(index, {}).get("status")
            if status is not None and status != Status.RUNNING.value:
                message = fields[index].get("message")
                _say(f"{name} {status}" + (f": {message}" if message else ""))
        if failed_running:
            _say(f"running phases failed: {failed_running}")


def _say(text: str) -> None:
    print(text, flush=True)


@contextlib.contextmanager
def _store(url: str | None) -> Iterator[ExecutionStore]:
    """The store of `--store`, made if it is not there; else a temporary one."""
    from procexec.engine.errors import ProcexecError
    from procexec.engine.store import open_store
    from procexec.local import temporary_store

    if url is None:
        with temporary_store() as store:
            yield store
        return
    try:
        store = open_store(url)
    except (ValueError, ProcexecError) as exc:  # another kind of URL; no server answering
        raise Refused(f"--store: {exc}") from None
    try:
        yield store
    finally:
        store.close()


def cmd_run(args: argparse.Namespace) -> int:
    """Run one execution of a process here, printing it as it goes."""
    from procexec.engine.errors import ProcexecError
    from procexec.local import LocalRunner

    body = parameters(args.param)
    if not _ENVIRONMENT.match(args.environment):
        raise Refused(f"--environment: {args.environment!r} is not an environment name")
    registry = _registry(args.module)
    if args.name not in registry:
        known = ", ".join(process.name for process in registry) or "none"
        raise Refused(f"unknown process {args.name!r} (known here: {known})")
    with _store(args.store) as store:
        local = LocalRunner(store, registry, worker_id=f"run-{os.getpid()}")
        try:
            doc = local.record(
                args.name,
                body,
                environment=args.environment,
                run_as=os.environ.get("USER") or "local",
                reason="procexec run",
            )
        except ProcexecError as exc:  # a parameter the process refuses
            return fail(f"{args.name}: {exc}", USAGE)
        where = f" in {_masked(args.store)}" if args.store else ""
        _say(f"{doc['name']} {doc['_id']} ({doc['environment']}){where}")
        with Follower(store, doc["_id"]):
            local.run(doc["_id"])
        final = local.document(doc["_id"])
    _say(f"{final['name']} {final['status']}: {final.get('message', '')}")
    if final.get("loaderMessage"):
        _say(f"loaderMessage: {final['loaderMessage']}")
    return 0 if final["status"] in PASSED else 1


def _masked(url: str) -> str:
    from procexec.engine.redact import masked_url

    return masked_url(url)


def add_run_command(commands: Any) -> None:
    """`procexec run …` on the CLI's subcommands."""
    run = commands.add_parser(
        "run",
        help="run a process here, without a service, printing its phases and log; exit 0 "
        "success or warning, 1 failed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("name", help="the process's name")
    run.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a parameter (repeatable); VALUE is read as JSON when it is JSON, else a string",
    )
    run.add_argument(
        "--module",
        action="append",
        default=[],
        metavar="MODULE",
        help="a module defining processes, by import path (repeatable; the current folder "
        "is searched first)",
    )
    run.add_argument(
        "--store",
        metavar="URL",
        help="run in this store (sqlite:///… or mongodb://…, made if missing); by default a "
        "temporary one, removed after the run",
    )
    run.add_argument(
        "--environment",
        default=DEFAULT_ENVIRONMENT,
        help=f"the run's environment (default {DEFAULT_ENVIRONMENT})",
    )
    run.set_defaults(handler=cmd_run)
