"""`procexec standalone`: the API, a worker and the beat in one command, on the embedded store
and broker by default."""

from __future__ import annotations

import argparse
import shlex
import signal
import socket
import sys
from typing import TYPE_CHECKING, Any

from procexec import preflight
from procexec.engine.notify_settings import shown_url
from procexec.engine.redact import masked_url, redact_logging
from procexec.engine.settings import Settings
from procexec.token_cli import ADMIN_TOKEN_FILE, shown_token, standalone_token

if TYPE_CHECKING:
    from procexec.engine.process import ProcessRegistry


def _command(*argv: str) -> list[str]:
    """`procexec ARGV` with this interpreter."""
    return [sys.executable, "-m", "procexec.cli", *argv]


def cmd_standalone(args: argparse.Namespace) -> int:
    """API, worker and beat in one command, on the embedded store and broker by default.

    The settings, the processes, the port and the data folder are checked, in that order,
    before anything is started or printed. The worker and the beat are supervised
    (`workers.supervisor`): restarted when they die, and the whole command ends, non-zero,
    when one cannot start.
    """
    # with the default handlers, the signal raised again after uvicorn's shutdown would kill
    # the process at once (or raise KeyboardInterrupt) and orphan the worker and beat below
    preflight.exit_on_signals()
    config = Settings.from_env()
    registry = preflight.processes(config)
    listening = preflight.listening_socket(args.host, args.port)
    try:
        preflight.data_folder(config)
        return _serve_standalone(args, config, registry, listening)
    finally:
        listening.close()


def _serve_standalone(
    args: argparse.Namespace,
    config: Settings,
    registry: ProcessRegistry,
    listening: socket.socket,
) -> int:
    import uvicorn

    from procexec.api.app import create_app
    from procexec.api.server import BoundedHttpProtocol, uvicorn_log_config
    from procexec.engine.store import open_store
    from procexec.workers.supervisor import Supervisor

    store = open_store(config.store_url)
    token = standalone_token(store, config.data_dir, args.user)
    server: uvicorn.Server | None = None

    def give_up(reason: str) -> None:
        if server is not None:
            server.should_exit = True

    supervisor = Supervisor(
        {
            "worker": _command(
                "worker",
                f"--concurrency={args.concurrency}",
                f"--pool={args.pool}",
                f"--log-level={args.log_level}",
            ),
            "beat": _command("beat", f"--log-level={args.log_level}"),
        },
        on_give_up=give_up,
    )

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            supervisor.stopping()  # the children get Ctrl-C too: their deaths are no crash
            super().handle_exit(sig, frame)

    app = create_app(config, store=store, registry=registry, children=supervisor.status)
    server = Server(
        uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            log_level=args.log_level.lower(),
            http=BoundedHttpProtocol,
            log_config=uvicorn_log_config(config.log_format),
        )
    )
    redact_logging()  # uvicorn's handlers are made: no password or token in any log line
    supervisor.start()
    url = f"http://{args.host}:{args.port}/service/process-exec"
    broker = masked_url(config.broker_url or f"embedded (filesystem) in {config.data_dir}")
    token_file = config.data_dir / ADMIN_TOKEN_FILE
    shown = token if args.print_token else shown_token(token)
    notify = ""
    if config.notify_url is not None:  # its scheme and host alone: never a secret
        notify = f"  notify: {shown_url(config.notify_url.get_secret_value())} "
        notify += f"(on {config.notify_on}, {config.notify_format})\n"
    print(
        f"procexec standalone\n"
        f"  API:    {url}\n"
        f"  store:  {masked_url(config.store_url)}\n"
        f"  broker: {broker}\n"
        f"{notify}"
        f"  token:  {shown}  (user {args.user}, scope admin; kept in {token_file})\n\n"
        f"Try:\n"
        f"  export TOKEN=$(cat {shlex.quote(str(token_file))})\n"
        f'  curl -X POST -H "Authorization: Bearer $TOKEN" -d \'{{"name":"ECB_FX"}}\' {url}/v1\n'
        f"  curl -H \"Authorization: Bearer $TOKEN\" '{url}/v1?name=ECB_FX'\n",
        flush=True,
    )
    try:
        server.run(sockets=[listening])
    finally:
        # a second signal must not cut this short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        supervisor.stop()
    if supervisor.gave_up is not None:
        print(f"procexec standalone: {supervisor.gave_up}", file=sys.stderr, flush=True)
        return 1
    return 0
