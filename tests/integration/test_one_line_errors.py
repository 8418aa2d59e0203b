"""Every mistake told in one line: the real `procexec` command, run as a subprocess, stops on a
setting, a module, a data folder or a port it cannot use with one line on stderr and its
documented exit status (docs/operations.md), never a traceback, having started and written
nothing; Ctrl-C stops standalone and its children cleanly; Flower takes Celery's spelling of
its options; a dispatch the broker refuses is one line in the API's log."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from procexec.engine.store.sqlite import SQLiteStore
from tests.integration.harness import (
    PROCEXEC,
    Service,
    api_client,
    create_token,
    free_port,
    processes_with_env,
    run_cli,
    service_env,
    start_api,
    start_standalone,
    trigger,
)

pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")

#: the exit statuses docs/operations.md documents
USAGE, CANNOT_START, INTERRUPTED, BROKEN_PIPE = 2, 3, 130, 141


def one_line(result: subprocess.CompletedProcess[str], status: int) -> str:
    """The one line `result` stopped with, checked: its status, nothing on stdout, one line on
    stderr, no traceback."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == status, output
    assert result.stdout == "", output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith("procexec: "), output
    return lines[0]


def nothing_started(data_dir: Path) -> None:
    assert processes_with_env("PROCEXEC_DATA_DIR", str(data_dir)) == []


# --- settings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["standalone", "--port", "0"],
        ["api", "--port", "0"],
        ["worker"],
        ["beat"],
        ["flower"],
        ["process", "list"],
        ["token", "list"],
        ["store", "check"],
    ],
    ids=lambda command: "-".join(command[:2]),
)
def test_an_unknown_setting_stops_every_command(tmp_path: Path, command: list[str]) -> None:
    data_dir = tmp_path / "data"
    env = service_env(data_dir, PROCEXEC_BROKER="redis://127.0.0.1:6379/0")
    line = one_line(run_cli(*command, env=env), USAGE)
    assert line == "procexec: unknown setting PROCEXEC_BROKER (did you mean PROCEXEC_BROKER_URL?)"
    assert not data_dir.exists()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "PROCEXEC_RETENTION_DAY",
            "3",
            "unknown setting PROCEXEC_RETENTION_DAY (did you mean PROCEXEC_RETENTION_DAYS?)",
        ),
        (
            "PROCEXEC_EXAMPLES",
            "flase",
            "PROCEXEC_EXAMPLES: 'flase' is neither true nor false "
            "(true/false, yes/no, on/off, 1/0)",
        ),
        (
            "PROCEXEC_STORE_URL",
            "postgres://bob:s3cret@x/y",
            "PROCEXEC_STORE_URL: 'postgres://bob:***@x/y' is no store URL procexec takes: "
            "use sqlite:///… or mongodb://…",
        ),
        (
            "PROCEXEC_PROCESSES",
            "nope.mod",
            "PROCEXEC_PROCESSES: cannot import module 'nope.mod': No module named 'nope'",
        ),
    ],
)
def test_standalone_refuses_a_setting_before_it_writes_anything(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    data_dir = tmp_path / "data"
    env = service_env(data_dir, **{variable: value})
    result = run_cli("standalone", "--port", str(free_port()), env=env)
    assert one_line(result, USAGE) == f"procexec: {message}"
    assert not data_dir.exists()
    nothing_started(data_dir)


def test_process_list_names_a_module_it_cannot_import(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = service_env(data_dir)
    SQLiteStore(data_dir / "procexec.db").close()  # the store a service made
    result = run_cli("process", "list", env=env | {"PROCEXEC_PROCESSES": "nope.mod"})
    assert one_line(result, USAGE) == (
        "procexec: PROCEXEC_PROCESSES: cannot import module 'nope.mod': No module named 'nope'"
    )


BAD_DEFAULTS = """
from pydantic import BaseModel
from procexec import Process

class Params(BaseModel):
    days: int = "many"

BROKEN = Process("BROKEN", params=Params)
BROKEN.phase("LOAD")(lambda ctx, previous: None)
"""


@pytest.mark.parametrize("command", ["api", "worker", "beat", "standalone"])
def test_a_process_whose_defaults_are_refused_stops_every_command_naming_it(
    tmp_path: Path, command: str
) -> None:
    """A definition its own parameters refuse fails at start-up, in one line naming the
    process and the field, before anything starts."""
    (tmp_path / "broken_defaults.py").write_text(BAD_DEFAULTS)
    data_dir = tmp_path / "data"
    env = service_env(data_dir) | {
        "PROCEXEC_PROCESSES": "broken_defaults",
        "PYTHONPATH": str(tmp_path),
    }
    listens = ["--port", str(free_port())] if command in ("api", "standalone") else []
    result = run_cli(command, *listens, env=env)
    assert one_line(result, USAGE) == (
        "procexec: PROCEXEC_PROCESSES: importing module 'broken_defaults' failed: ValueError: "
        "process BROKEN: its defaults are refused: defaults.days: Input should be a valid "
        "integer, unable to parse string as an integer (got 'many')"
    )
    nothing_started(data_dir)


@pytest.mark.parametrize("command", ["worker", "beat"])
def test_an_option_celery_does_not_take_is_one_line(tmp_path: Path, command: str) -> None:
    result = run_cli(command, "--no-such-option", env=service_env(tmp_path / "data"))
    assert one_line(result, USAGE).startswith("procexec: No such option '--no-such-option'")
    nothing_started(tmp_path / "data")


# --- the data folder -----------------------------------------------------------------------


def _unwritable_folder() -> Path:
    """A folder that is there and that even root cannot write in (sysfs refuses new files)."""
    folder = Path("/sys/kernel")
    if not folder.is_dir():
        pytest.skip("no /sys/kernel here")
    try:
        (folder / "procexec-write-check").touch()
    except OSError:
        return folder
    pytest.skip("/sys/kernel is writable here")


@pytest.mark.parametrize("case", ["a file", "under a file", "under /proc", "not writable"])
@pytest.mark.parametrize("command", ["standalone", "worker"])
def test_a_data_folder_that_cannot_be_used_is_one_line(
    tmp_path: Path, case: str, command: str
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("mine\n")
    data_dir = {
        "a file": a_file,
        "under a file": a_file / "data",
        "under /proc": Path("/proc/procexec-data"),  # procfs makes no folder, even for root
        "not writable": _unwritable_folder() if case == "not writable" else Path(),
    }[case]
    reason = {
        "a file": "it is not a folder",
        "under a file": "Not a directory",
        "under /proc": "No such file or directory",
        "not writable": "Permission denied",
    }[case]
    argv = [command, "--port", str(free_port())] if command == "standalone" else [command]
    result = run_cli(*argv, env=service_env(data_dir))
    assert one_line(result, CANNOT_START) == (
        f"procexec: PROCEXEC_DATA_DIR: cannot use {data_dir} as the data folder: {reason}"
    )
    assert a_file.read_text() == "mine\n"
    assert list(tmp_path.iterdir()) == [a_file]
    nothing_started(data_dir)


# --- the port ------------------------------------------------------------------------------


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


@pytest.mark.parametrize("command", ["standalone", "api"])
def test_a_port_in_use_stops_the_command_before_it_starts_anything(
    tmp_path: Path, taken_port: int, command: str
) -> None:
    data_dir = tmp_path / "data"
    result = run_cli(command, "--port", str(taken_port), env=service_env(data_dir))
    assert one_line(result, CANNOT_START) == (
        f"procexec: cannot listen on 127.0.0.1:{taken_port}: Address already in use"
    )
    assert not data_dir.exists()  # no store, no token, no broker folders
    nothing_started(data_dir)


# --- Ctrl-C --------------------------------------------------------------------------------


@pytest.mark.e2e
def test_a_reader_that_stops_reading_is_no_traceback(tmp_path: Path) -> None:
    """`procexec run DEMO | head -0`: the pipe closed before the command writes to it."""
    env = service_env(tmp_path / "data")
    command = subprocess.Popen(
        [PROCEXEC, "run", "DEMO"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert command.stdout is not None and command.stderr is not None
    command.stdout.close()
    with command.stderr:
        stderr = command.stderr.read().decode()
    assert command.wait(60) == BROKEN_PIPE
    assert stderr == ""


def test_sigint_stops_standalone_and_its_children_without_a_traceback(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    standalone, _, _ = start_standalone(service_env(data_dir), tmp_path)
    try:
        standalone.wait_for_output(r"celery@\S+ ready\.", timeout=60)
        standalone.wait_for_output(r"beat: Starting", timeout=30)
        assert len(processes_with_env("PROCEXEC_DATA_DIR", str(data_dir))) >= 3
        os.kill(standalone.pid, signal.SIGINT)  # to standalone alone, as `kill -INT` does
        code = standalone.proc.wait(40)
        deadline = time.monotonic() + 10
        while processes_with_env("PROCEXEC_DATA_DIR", str(data_dir)):
            assert time.monotonic() < deadline, "children left after SIGINT"
            time.sleep(0.2)
    finally:
        standalone.stop()
    assert code == INTERRUPTED, standalone.tail()
    assert "Traceback" not in standalone.output(), standalone.tail()
    assert "KeyboardInterrupt" not in standalone.output()


# --- Flower --------------------------------------------------------------------------------


@pytest.mark.e2e
def test_flower_takes_celery_s_spelling_of_its_options(tmp_path: Path) -> None:
    port = free_port()
    flower = Service(
        "flower",
        [PROCEXEC, "flower", "--port", str(port), "--address", "127.0.0.1"],
        env=service_env(tmp_path / "data"),
        log_dir=tmp_path,
    )
    try:
        deadline = time.monotonic() + 60
        with httpx2.Client(timeout=5, trust_env=False) as client:
            while True:
                try:
                    if client.get(f"http://127.0.0.1:{port}/healthcheck").text == "OK":
                        break
                except httpx2.TransportError:
                    pass
                if not flower.alive():
                    flower.fail("exited before it answered on its port")
                if time.monotonic() > deadline:
                    flower.fail(f"did not answer on port {port}")
                time.sleep(0.2)
    finally:
        flower.stop()
    assert "Traceback" not in flower.output()


# --- a broker that is down -------------------------------------------------------------------


@pytest.mark.e2e
def test_a_dispatch_the_broker_refuses_is_one_line_in_the_api_s_log(tmp_path: Path) -> None:
    down = f"redis://bob:s3cret@127.0.0.1:{free_port()}/0"  # nothing listens there
    env = service_env(tmp_path / "data", down)
    api, url = start_api(env, tmp_path)
    try:
        token = create_token(env, "alice", scope="run")
        with api_client(url, token) as client:
            execution_id = trigger(client, "ECB_FX")  # recorded: sent again when it is back
        line = api.wait_for_output(rf"^.*dispatching {execution_id} failed.*$", timeout=30)[0]
        time.sleep(0.5)  # whatever would follow it (a traceback) is written by now
        after = api.output().split(line, 1)[1].splitlines()[1:]
    finally:
        api.stop()
    assert f"broker redis://bob:***@{down.split('@')[1]}" in line, line
    assert "Connection refused" in line, line
    assert line.endswith("; it stays triggered for redelivery"), line
    assert all(not text.startswith((" ", "Traceback", "The above")) for text in after), after
    assert "Traceback" not in api.output()
    assert "s3cret" not in api.output()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--port"], "procexec: flower: --port needs a value (--port=VALUE)"),
        (["--port=abc"], "procexec: flower: --port: 'abc' is not a whole number"),
        (
            ["--prot=5555"],
            "procexec: flower: --prot=5555 is not an option of Flower's (did you mean --port?)",
        ),
        (["--basic-auth"], "procexec: flower: --basic-auth needs a value (--basic-auth=VALUE)"),
    ],
    ids=["no-value", "not-a-number", "misspelt", "no-login"],
)
def test_a_flower_option_it_cannot_read_is_one_line(
    tmp_path: Path, options: list[str], expected: str
) -> None:
    """Flower passes over an option it does not know in silence, and answers a value it cannot
    read with a tornado traceback: procexec reads them against Flower's own definitions first."""
    data_dir = tmp_path / "data"
    assert one_line(run_cli("flower", *options, env=service_env(data_dir)), USAGE) == expected
    nothing_started(data_dir)
