"""The `procexec` command: standalone, api, worker, beat, token create."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from engine.config import Settings
from engine.constants import Scope

logger = logging.getLogger("procexec")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def _settings() -> Settings:
    settings = Settings.from_env()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings


def cmd_token_create(args: argparse.Namespace) -> int:
    from engine.store import open_store
    from engine.tokens import create_token

    try:
        token = create_token(open_store(_settings().store_url), args.user, args.scope)
    except ValueError as exc:
        print(f"procexec: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    uvicorn.run(
        "api.app:app_factory",
        factory=True,
        host=args.host,
        port=args.port,
        log_level=args.log_level.lower(),
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from workers.tasks import app

    argv = [
        "worker",
        f"--loglevel={args.log_level}",
        f"--pool={args.pool}",
        f"--concurrency={args.concurrency}",
        "--without-mingle",
        "--without-gossip",
    ]
    if args.hostname:
        argv.append(f"--hostname={args.hostname}")
    app.worker_main(argv)
    return 0


def cmd_beat(args: argparse.Namespace) -> int:
    from workers.tasks import app

    schedule = _settings().data_dir / "celerybeat-schedule"
    app.start(["beat", f"--loglevel={args.log_level}", f"--schedule={schedule}"])
    return 0


def _spawn(*argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "workers.cli", *argv], env=os.environ.copy())


def cmd_standalone(args: argparse.Namespace) -> int:
    """API, worker and beat in one command, on the embedded store and broker by default."""
    from engine.store import open_store
    from engine.tokens import create_token

    settings = _settings()
    token = create_token(open_store(settings.store_url), args.user, Scope.RUN)
    children = [
        _spawn(
            "worker",
            f"--concurrency={args.concurrency}",
            f"--pool={args.pool}",
            f"--log-level={args.log_level}",
        ),
        _spawn("beat", f"--log-level={args.log_level}"),
    ]
    url = f"http://{args.host}:{args.port}/service/process-exec"
    print(
        f"procexec standalone\n"
        f"  API:    {url}\n"
        f"  store:  {settings.store_url}\n"
        f"  broker: {settings.broker_url or 'embedded (filesystem) in ' + str(settings.data_dir)}\n"
        f"  token:  {token}  (user {args.user}, scope run)\n\n"
        f"Try:\n"
        f"  curl -X POST -H 'Authorization: Bearer {token}' -d '{{\"name\":\"ECB_FX\"}}' {url}/v1\n"
        f"  curl -H 'Authorization: Bearer {token}' '{url}/v1?name=ECB_FX'\n",
        flush=True,
    )
    try:
        return cmd_api(args)
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for child in children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="procexec", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
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
    standalone.add_argument("--user", default="admin", help="user of the printed token")
    standalone.set_defaults(handler=cmd_standalone)

    api = add("api", "the REST API (uvicorn)")
    serve_options(api)
    api.set_defaults(handler=cmd_api)

    worker = add("worker", "a Celery worker that runs executions")
    worker_options(worker)
    worker.add_argument("--hostname", help="Celery node name")
    worker.set_defaults(handler=cmd_worker)

    beat = add("beat", "the Celery beat scheduler")
    beat.set_defaults(handler=cmd_beat)

    token = commands.add_parser("token", help="API tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser("create", help="create a token; prints only the token")
    create.add_argument("--user", required=True, help="the user the token acts as (runAs)")
    create.add_argument(
        "--scope", default=Scope.RUN.value, choices=[s.value for s in Scope], help="default run"
    )
    create.set_defaults(handler=cmd_token_create)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
