"""The embedded broker's transport on real files: its guarantees, and the wake-ups that spare its
consumers a polling wait (real consumer processes; a polling interval of minutes, so that only a
wake-up can deliver in time; nothing here measures speed)."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from queue import Empty
from typing import Any

import pytest
from kombu import Connection

from procexec.engine.settings import Settings
from procexec.workers import fs_wake
from procexec.workers.celery_app import broker_options
from tests.integration.harness import Service, stop_all

#: longer than any wait below: whatever arrives in time came by a wake-up
NEVER = 300.0
#: how long a test waits for what should come at once
SOON = 20.0

CONSUMER = """
import json, sys, threading
from kombu import Connection
from procexec.workers import fs_transport  # noqa: F401 - the procexecfs scheme

url, options, count = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
ack_later = sys.argv[4] == "ack-later"
with Connection(url, transport_options=options) as connection:
    queue = connection.SimpleQueue(sys.argv[5])
    queue.consumer.qos(prefetch_count=1)
    print("consuming", flush=True)
    for _ in range(count):
        message = queue.get(block=True, timeout=3600)
        print("got", message.payload, flush=True)
        if ack_later:  # as a prefork worker's result thread does, with acks late
            threading.Timer(0.2, message.ack).start()
        else:
            message.ack()
"""

APP = """
import json, os, time
from procexec.engine.settings import Settings
from procexec.workers.celery_app import make_celery

app = make_celery(Settings.from_env({"PROCEXEC_DATA_DIR": os.environ["TEST_DATA"]}))
app.conf.broker_transport_options.update(json.loads(os.environ["TEST_OPTIONS"]))

@app.task(name="test.record")
def record(number):
    time.sleep(0.2)  # still running when the worker next looks: only an ack's wake-up helps
    with open(os.environ["TEST_OUT"], "a") as out:
        out.write(f"{number}\\n")
"""


@pytest.fixture
def broker(tmp_path: Path) -> tuple[str, dict[str, Any]]:
    """The embedded broker's URL and options, in a fresh data folder (a short path, for the
    sockets' addresses)."""
    return broker_options(Settings.from_env({"PROCEXEC_DATA_DIR": str(tmp_path / "d")}))


@pytest.fixture
def connection(broker: tuple[str, dict[str, Any]]) -> Iterator[Connection]:
    url, options = broker
    with Connection(url, transport_options=options) as conn:
        yield conn


def _root(options: dict[str, Any]) -> Path:
    return Path(options["data_folder_in"]).parent


def _consumer(
    broker: tuple[str, dict[str, Any]],
    log_dir: Path,
    count: int = 1000,
    ack: str = "at-once",
    **options: Any,
) -> Service:
    """A consumer process (prefetch 1) that takes `count` messages, then closes its connection
    and ends; with `ack="ack-later"`, it acks each from another thread, 0.2 s later."""
    url, base = broker
    argv = [sys.executable, "-c", CONSUMER, url, json.dumps({**base, **options}), str(count), ack]
    argv.append(_queue_name(base))
    consumer = Service("consumer", argv, env=os.environ, log_dir=log_dir)
    consumer.wait_for_output("^consuming$", SOON)
    return consumer


def _sockets(options: dict[str, Any], pid: int) -> list[Path]:
    return sorted((_root(options) / fs_wake.FOLDER).glob(f"{pid}-*.sock"))


def _wait_socket(options: dict[str, Any], consumer: Service) -> Path:
    deadline = time.monotonic() + SOON
    while not _sockets(options, consumer.pid):
        if time.monotonic() > deadline:
            consumer.fail("bound no wake-up socket")
        time.sleep(0.05)
    time.sleep(0.5)  # and is waiting on it
    return _sockets(options, consumer.pid)[0]


def _queue_name(options: dict[str, Any]) -> str:
    # one per test: kombu keeps the queues declared in a process, and would not bind one again
    # in another test's folder
    return f"wake-{_root(options).parent.parent.name}"


def _publish(connection: Connection, body: str) -> None:
    connection.SimpleQueue(_queue_name(connection.transport_options)).put(body)


def _message(tag: str) -> dict[str, Any]:
    time.sleep(0.002)  # files are named by the millisecond: one per millisecond keeps the order
    return {"body": tag, "properties": {"delivery_tag": tag}}


@pytest.mark.e2e
def test_a_wake_up_reaches_a_blocked_consumer(
    broker: tuple[str, dict[str, Any]], connection: Connection, tmp_path: Path
) -> None:
    _, options = broker
    consumer = _consumer(broker, tmp_path, 3, polling_interval=NEVER, fallback_interval=NEVER)
    try:
        path = _wait_socket(options, consumer)
        mode = stat.S_IMODE(path.stat().st_mode)
        assert stat.S_ISSOCK(path.stat().st_mode) and mode & 0o077 == 0, oct(mode)
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        for number in range(3):
            _publish(connection, f"hello {number}")
            consumer.wait_for_output(f"^got hello {number}$", SOON)
        assert consumer.proc.wait(SOON) == 0
    finally:
        stop_all(consumer)
    assert _sockets(options, consumer.pid) == []  # removed as its connection closed


@pytest.mark.e2e
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc/self/fd")
def test_a_folder_too_deep_for_a_socket_s_address_still_wakes(tmp_path: Path) -> None:
    deep = tmp_path / ("deep" * 25)  # the socket's path: over 200 bytes, Linux takes 108
    broker = broker_options(Settings.from_env({"PROCEXEC_DATA_DIR": str(deep / "d")}))
    url, options = broker
    consumer = _consumer(broker, tmp_path, 1, polling_interval=NEVER, fallback_interval=NEVER)
    try:
        assert len(bytes(_wait_socket(options, consumer))) > 108
        with Connection(url, transport_options=options) as connection:
            _publish(connection, "deep down")
        consumer.wait_for_output("^got deep down$", SOON)
        assert consumer.proc.wait(SOON) == 0
    finally:
        stop_all(consumer)
    assert _sockets(options, consumer.pid) == []


@pytest.mark.e2e
def test_the_fallback_poll_delivers_when_the_wake_up_is_lost(
    broker: tuple[str, dict[str, Any]], connection: Connection, tmp_path: Path
) -> None:
    _, options = broker
    consumer = _consumer(broker, tmp_path, polling_interval=NEVER, fallback_interval=0.5)
    try:
        _wait_socket(options, consumer).unlink()  # no publisher finds it any more
        _publish(connection, "unannounced")
        consumer.wait_for_output("^got unannounced$", SOON)
    finally:
        stop_all(consumer)


@pytest.mark.e2e
def test_the_sockets_of_dead_consumers_are_removed(
    broker: tuple[str, dict[str, Any]], connection: Connection, tmp_path: Path
) -> None:
    _, options = broker
    dead = _consumer(broker, tmp_path, polling_interval=NEVER, fallback_interval=NEVER)
    alive = _consumer(broker, tmp_path, polling_interval=NEVER, fallback_interval=NEVER)
    try:
        left = _wait_socket(options, dead)
        _wait_socket(options, alive)
        os.kill(dead.pid, signal.SIGKILL)
        dead.proc.wait(SOON)
        assert left.exists()  # nobody removed it

        _publish(connection, "after the death")
        alive.wait_for_output("^got after the death$", SOON)
        assert not left.exists()
        assert _sockets(options, alive.pid) != []
    finally:
        stop_all(dead, alive)


@pytest.mark.e2e
def test_a_slot_freed_by_an_ack_is_filled_at_once(
    broker: tuple[str, dict[str, Any]], connection: Connection, tmp_path: Path
) -> None:
    """Prefetch 1, acked from another thread: after each ack, the next message, queued before
    the consumer started (so no publisher wakes it), is taken without a poll."""
    for number in range(3):
        _publish(connection, f"queued {number}")
    consumer = _consumer(
        broker, tmp_path, 3, "ack-later", polling_interval=NEVER, fallback_interval=NEVER
    )
    try:
        for number in range(3):
            consumer.wait_for_output(f"^got queued {number}$", SOON)
        assert consumer.proc.wait(SOON) == 0
    finally:
        stop_all(consumer)


@pytest.mark.e2e
def test_a_celery_worker_with_procexec_s_settings_is_woken(
    broker: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    """A real prefork worker, acks late, prefetch 1, events on, and no polling: the tasks sent
    once it waits are run."""
    (tmp_path / "ackapp.py").write_text(APP)
    out = tmp_path / "done.txt"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
        "TEST_DATA": str(tmp_path / "d"),
        "TEST_OUT": str(out),
        "TEST_OPTIONS": json.dumps({"polling_interval": NEVER, "fallback_interval": NEVER}),
    }
    argv = [sys.executable, "-m", "celery", "-A", "ackapp", "worker", "-P", "prefork", "-c", "1"]
    worker = Service("worker", [*argv, "-n", "acks@%h", "-l", "INFO"], env=env, log_dir=tmp_path)
    try:
        worker.wait_for_output(r"@\S+ ready\.", 60)
        sys.path.insert(0, str(tmp_path))
        os.environ.update({key: env[key] for key in ("TEST_DATA", "TEST_OUT", "TEST_OPTIONS")})
        import ackapp  # type: ignore[import-not-found]

        for number in range(4):
            ackapp.app.send_task("test.record", args=[number])
        deadline = time.monotonic() + SOON
        while len(out.read_text().split() if out.exists() else []) < 4:
            if time.monotonic() > deadline:
                worker.fail(f"ran {out.read_text() if out.exists() else 'nothing'}")
            time.sleep(0.05)
        ackapp.app.close()
    finally:
        for key in ("TEST_DATA", "TEST_OUT", "TEST_OPTIONS"):
            os.environ.pop(key, None)
        sys.modules.pop("ackapp", None)
        sys.path.remove(str(tmp_path))
        stop_all(worker)
    assert sorted(out.read_text().split()) == ["0", "1", "2", "3"]


def test_a_listing_serves_many_gets_and_misses_nothing(connection: Connection) -> None:
    channel = connection.default_channel
    other = connection.clone().default_channel  # another consumer of the same folder
    for number in range(3):
        channel._put("q", _message(f"m{number}"))
    assert channel._get("q")["body"] == "m0"  # listed m0 to m2
    assert other._get("q")["body"] == "m1"  # taken from under the first one's listing
    for number in range(3, 5):
        channel._put("q", _message(f"m{number}"))
    assert [channel._get("q")["body"] for _ in range(3)] == ["m2", "m3", "m4"]
    with pytest.raises(Empty):
        channel._get("q")
    with pytest.raises(Empty):
        other._get("q")
    other.connection.client.release()


def test_a_corrupt_message_is_quarantined(
    connection: Connection, broker: tuple[str, dict[str, Any]]
) -> None:
    _, options = broker
    channel = connection.default_channel
    Path(options["data_folder_in"], "000000000000000_bad.q.msg").write_bytes(b"{not json")
    channel._put("q", _message("good"))
    assert channel._get("q")["body"] == "good"
    assert [path.name for path in (_root(options) / "bad").iterdir()] == [
        "000000000000000_bad.q.msg"
    ]


def test_a_dead_process_s_claimed_messages_come_back_with_a_wake_up(
    connection: Connection, broker: tuple[str, dict[str, Any]]
) -> None:
    _, options = broker
    channel = connection.default_channel
    waker = fs_wake.Waker(str(_root(options) / fs_wake.FOLDER))
    try:
        pid = _a_dead_pid()
        claimed = _root(options) / "inflight" / str(pid)
        claimed.mkdir(parents=True)
        (claimed / "0001_x.q.msg").write_text(json.dumps(_message("claimed")))

        assert channel.recover_dead_inflight() == 1
        assert not claimed.exists()
        waker.take()
        assert waker.generations == {"q": 1}
        assert channel._get("q")["body"] == "claimed"
    finally:
        waker.close()
    assert not Path(waker.path).exists()


def test_without_unix_sockets_consumers_poll(
    connection: Connection, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delattr(socket, "AF_UNIX")
    waker = fs_wake.Waker(str(tmp_path / "wake"))
    assert not waker.active
    fs_wake.notify(str(tmp_path / "wake"), "q")  # nothing to wake, nothing raised
    queue = connection.SimpleQueue("polled")
    queue.put("by polling")
    message = queue.get(block=True, timeout=SOON)
    assert message.payload == "by polling"
    message.ack()
    assert connection.transport.waker is not None and not connection.transport.waker.active


def _a_dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid
