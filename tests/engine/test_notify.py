"""Webhook notifications through the in-process engine (the bench: tests/engine/runs.py) to a
real HTTP receiver (tests/webhooks.py): one signed post per failed run, retried while the
receiver answers 500, none while notifications are off, a hanging receiver delaying nothing;
lost runs and missed fire times; a process's own settings; the Slack preset; masking."""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from procexec.engine.context import PhaseContext
from procexec.engine.notify import Event, Notifier, encode, signature, slack_body
from procexec.engine.notify_sender import Delivery, Sender
from procexec.engine.notify_settings import Notify, shown_url
from procexec.engine.process import Process, ProcessRegistry
from procexec.engine.scheduler import SchedulerService
from procexec.engine.settings import Settings, SettingsError
from procexec.engine.store.base import ExecutionStore
from procexec.engine.trigger_service import TriggerService
from tests.engine.runs import (
    DEADLINE,
    NO_HEARTBEAT,
    Background,
    Bench,
    past_lost_timeout,
    wait_for,
)
from tests.webhooks import Receiver, receiver

SECRET = "s3cret-of-the-operator"
PUBLIC = "https://procexec.example.com"


@pytest.fixture
def bench(any_bench: Bench) -> Bench:
    """This module's bench on each store in turn: SQLite, then MongoDB or mongomock."""
    return any_bench


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as found:
        yield found


@pytest.fixture
def sender() -> Sender:
    """A sender of the test's own, its back-off short."""
    return Sender(backoff=0.05, backoff_factor=1.0, timeout=30.0)


def settings(**env: str) -> Settings:
    return Settings.from_env({f"PROCEXEC_{key.upper()}": value for key, value in env.items()})


def notifier(bench: Bench, sender: Sender, **env: str) -> Notifier:
    found = Notifier.of(settings(**env), bench.registry, sender=sender)
    assert found is not None
    return found


def run(bench: Bench, note: Notifier | None, body: dict[str, Any] | None = None) -> str:
    execution_id = bench.record("DEMO", body)
    bench.runner(notifier=note).run(execution_id)
    return execution_id


def test_a_failed_run_is_posted_once_signed_and_retried_once_while_the_receiver_fails(
    bench: Bench, hook: Receiver, sender: Sender
) -> None:
    note = notifier(bench, sender, notify_url=hook.url, notify_secret=SECRET, public_url=PUBLIC)
    hook.script = [500]  # the first try fails, the retry succeeds
    execution_id = run(bench, note, {"fail_in": "LOAD"})
    assert sender.flush(DEADLINE)
    first, second = hook.wait_for(2)
    assert first.body == second.body  # the same delivery, tried again
    assert first.signed_with(SECRET) and second.signed_with(SECRET)
    assert not first.signed_with("another secret")
    assert first.headers["content-type"] == "application/json"
    doc = bench.doc(execution_id)
    assert first.json == {
        "event": "finished",
        "id": execution_id,
        "name": "DEMO",
        "environment": "production",
        "status": "failed",
        "message": doc["message"],
        "failedPhase": "LOAD",
        "link": f"{PUBLIC}/service/process-exec/v1/{execution_id}",
        "at": first.json["at"],
    }
    assert first.body == encode(first.json)  # compact: the bytes signed are the bytes sent
    assert sender.counts.as_dict() == {"delivered": 1, "retried": 1, "failed": 0, "dropped": 0}

    run(bench, note)  # a success: not told under `failed`
    assert sender.flush(DEADLINE) and len(hook.posts) == 2


def test_nothing_is_posted_while_notifications_are_off(bench: Bench, hook: Receiver) -> None:
    assert Notifier.of(settings(), bench.registry) is None  # the runner gets none at all
    sender = Sender()
    quiet = Notifier.of(settings(notify_on="all"), bench.registry, sender=sender)
    assert quiet is None  # `on` without a URL is nothing either
    run(bench, None, {"fail_in": "LOAD"})
    assert hook.posts == [] and sender.pending() == 0


def test_all_tells_of_successes_too_unsigned_without_a_secret(
    bench: Bench, hook: Receiver, sender: Sender
) -> None:
    note = notifier(bench, sender, notify_url=hook.url, notify_on="all")
    execution_id = run(bench, note)
    assert sender.flush(DEADLINE)
    (post,) = hook.posts
    assert post.json["id"] == execution_id and post.json["status"] == "success"
    assert post.json["failedPhase"] is None and post.json["link"] is None
    assert "x-procexec-signature" not in post.headers


def test_a_hanging_receiver_delays_no_run(bench: Bench, hook: Receiver, sender: Sender) -> None:
    note = notifier(bench, sender, notify_url=hook.url, notify_secret=SECRET)
    hook.hang = True
    first = run(bench, note, {"fail_in": "EXTRACT"})
    assert hook.hanging.wait(DEADLINE)  # the receiver holds the first post
    # while it hangs, more runs end, their final status written, their posts queued
    second = run(bench, note, {"fail_in": "TRANSFORM"})
    assert not hook.release.is_set()
    assert bench.status(first) == bench.status(second) == "failed"
    assert sender.pending() >= 1
    hook.release.set()
    assert sender.flush(DEADLINE)
    assert sorted(post.json["id"] for post in hook.posts) == sorted([first, second])


def test_a_full_queue_drops_and_counts(hook: Receiver) -> None:
    hook.hang = True
    sender = Sender(capacity=1, timeout=30.0)
    target_url = hook.url

    assert sender.submit(Delivery(target_url, b"{}", {}, "one"))
    assert hook.hanging.wait(DEADLINE)
    assert not sender.submit(Delivery(target_url, b"{}", {}, "two"))
    assert sender.counts.as_dict()["dropped"] == 1
    hook.release.set()
    assert sender.flush(DEADLINE)
    assert sender.counts.as_dict()["delivered"] == 1


def test_a_receiver_that_never_answers_well_is_given_up_and_counted(
    hook: Receiver, caplog: pytest.LogCaptureFixture
) -> None:

    hook.script = [503, 500, 502]
    sender = Sender(backoff=0.01, backoff_factor=1.0)
    url = hook.url.replace("http://", f"http://user:{SECRET}@") + "?token=" + SECRET
    with caplog.at_level(logging.INFO, logger="procexec.engine.notify_sender"):
        sender.submit(Delivery(url, b"{}", {}, "finished DEMO 1 (failed)"))
        assert sender.flush(DEADLINE)
    assert len(hook.posts) == 3
    assert sender.counts.as_dict() == {"delivered": 0, "retried": 2, "failed": 1, "dropped": 0}
    lines = [record.getMessage() for record in caplog.records]
    assert lines[-1] == (
        f"notification finished DEMO 1 (failed) to {shown_url(url)}: failed, HTTP 502 "
        "(attempt 3 of 3); given up"
    )
    assert all(SECRET not in line and "/hook" not in line for line in lines)
    assert hook.posts[0].headers["authorization"].startswith("Basic ")  # the URL's user


def test_a_lost_run_is_told_with_what_became_of_it(
    bench: Bench, hook: Receiver, sender: Sender
) -> None:
    entered, release = threading.Event(), threading.Event()
    process = Process("FRAGILE", on_lost="fail")

    @process.phase("EXTRACT")
    def extract(ctx: PhaseContext, previous: Any) -> None:
        entered.set()
        release.wait(DEADLINE)

    bench.add(process)
    note = notifier(bench, sender, notify_url=hook.url, notify_secret=SECRET)
    bench.housekeeper.notifier = note
    execution_id = bench.record("FRAGILE")
    dead = Background(
        bench.store,
        lambda: bench.runner(heartbeat_interval=NO_HEARTBEAT).run(execution_id),
        "dead-worker",
    )
    try:
        assert entered.wait(DEADLINE)
        report = bench.housekeeper.run_once(past_lost_timeout())
        assert report.failed == [execution_id]
    finally:
        release.set()
    dead.join()
    assert sender.flush(DEADLINE)
    (post,) = hook.posts
    assert post.signed_with(SECRET)
    assert post.json["event"] == "lost" and post.json["status"] == "failed"
    assert post.json["failedPhase"] == "EXTRACT"
    assert post.json["message"] == bench.doc(execution_id)["message"]
    assert post.json["message"].startswith("Worker lost: no heartbeat from w1#")


def test_a_lost_run_resumed_is_told_so(bench: Bench, hook: Receiver, sender: Sender) -> None:
    entered, release = threading.Event(), threading.Event()
    process = Process("RESUMED")

    @process.phase("EXTRACT")
    def extract(ctx: PhaseContext, previous: Any) -> None:
        if not entered.is_set():
            entered.set()
            release.wait(DEADLINE)

    bench.add(process)
    bench.housekeeper.notifier = notifier(bench, sender, notify_url=hook.url)
    execution_id = bench.record("RESUMED")
    dead = Background(
        bench.store,
        lambda: bench.runner(heartbeat_interval=NO_HEARTBEAT).run(execution_id),
        "dead-worker",
    )
    try:
        assert entered.wait(DEADLINE)
        assert bench.housekeeper.run_once(past_lost_timeout()).resumed == [execution_id]
    finally:
        release.set()
    dead.join()
    assert sender.flush(DEADLINE)
    (post,) = hook.posts
    assert (post.json["event"], post.json["status"]) == ("lost", "triggered")
    assert post.json["message"] == bench.doc(execution_id)["message"]
    assert post.json["message"].endswith("; resuming (recovery 1 of 3)")


def test_missed_fire_times_are_told(store: ExecutionStore, hook: Receiver, sender: Sender) -> None:
    process = Process("MINUTELY", schedule="* * * * *")
    process.phase("EXTRACT")(lambda ctx, previous: None)
    registry = ProcessRegistry([process])
    note = Notifier.of(settings(notify_url=hook.url), registry, sender=sender)
    triggers = TriggerService(store, registry, lambda *args: None)
    beat = SchedulerService(store, registry, triggers, notifier=note)
    start = datetime(2021, 7, 1, 12, 0, 30, tzinfo=UTC)
    beat.tick(start)  # first sight: from now
    assert beat.tick(start + timedelta(minutes=10)).skipped == {"MINUTELY": 9}
    assert sender.flush(DEADLINE)
    (post,) = hook.posts
    assert post.json["event"] == "missed" and post.json["id"] is None
    assert post.json["name"] == "MINUTELY" and post.json["status"] == "missed"
    assert post.json["message"] == (
        "skipped 9 missed fire time(s) from 2021-07-01T12:01:00.000Z to "
        "2021-07-01T12:09:00.000Z (policy skip)"
    )


def test_a_process_s_own_settings_override_the_global_ones(
    bench: Bench, hook: Receiver, sender: Sender
) -> None:
    with receiver() as own:
        quiet = Process("QUIET", notify=Notify(on="off"))
        loud = Process("LOUD", notify=Notify(url=own.url, on="all", format="slack"))
        for process in (quiet, loud):
            process.phase("EXTRACT")(lambda ctx, previous: None)
            bench.add(process)
        note = notifier(bench, sender, notify_url=hook.url, notify_secret=SECRET)
        assert note.target("QUIET") is None
        for name in ("QUIET", "LOUD"):
            bench.runner(notifier=note).run(bench.record(name))
        assert sender.flush(DEADLINE)
        (post,) = own.posts
        assert hook.posts == []
        assert post.signed_with(SECRET)  # the global secret, the process's own URL
        assert set(post.json) == {"text"} and post.json["text"].startswith(
            ":white_check_mark: LOUD (production) success: Completed Successfully"
        )
    # a process's own URL is enough, without a global one
    solo = ProcessRegistry([loud])
    assert Notifier.of(settings(), solo) is not None


def test_the_slack_preset_says_what_failed_with_its_link() -> None:
    event = Event("finished", "1b2c", "DEMO", "production", "failed", "Failed in LOAD: x", "LOAD",
                  f"{PUBLIC}/service/process-exec/v1/1b2c", "2024-05-01T10:00:00.000Z")  # fmt: skip
    assert slack_body(event) == {
        "text": f":x: DEMO (production) failed in LOAD: Failed in LOAD: x <{PUBLIC}"
        "/service/process-exec/v1/1b2c|1b2c>"
    }
    body = encode(slack_body(event))
    assert signature(body, "k").startswith("sha256=") and len(signature(body, "k")) == 71


def test_the_url_and_the_secret_are_never_shown() -> None:
    url = f"https://user:{SECRET}@hooks.example.com/services/T0/B0/{SECRET}?key={SECRET}"
    found = settings(notify_url=url, notify_secret=SECRET)
    assert found.notify_url is not None and found.notify_url.get_secret_value() == url
    assert SECRET not in repr(found) and SECRET not in str(found)
    assert shown_url(url) == "https://hooks.example.com/…"
    own = Notify(url=url, secret=SECRET)
    assert SECRET not in repr(own) and SECRET not in repr(Process("P", notify=own))
    with pytest.raises(SettingsError) as refused:
        settings(notify_url=f"ftp://user:{SECRET}@host/{SECRET}")
    assert SECRET not in str(refused.value)
    assert str(refused.value) == "PROCEXEC_NOTIFY_URL: 'ftp://host/…' is no http:// or https:// URL"
    with pytest.raises(SettingsError, match="PROCEXEC_NOTIFY_ON: 'some' is none of failed, all"):
        settings(notify_on="some")
    with pytest.raises(ValueError, match=r"notify\.on: .sometimes. is none of failed, all, off"):
        Notify(on="sometimes")  # type: ignore[arg-type]
    assert settings(notify_on=" ALL ", notify_format="Slack").notify_format == "slack"


def test_a_run_that_times_out_is_told(bench: Bench, hook: Receiver, sender: Sender) -> None:
    process = Process("SLOW", timeout=0.2)

    @process.phase("EXTRACT")
    def extract(ctx: PhaseContext, previous: Any) -> None:
        ctx.sleep(DEADLINE)

    bench.add(process)
    note = notifier(bench, sender, notify_url=hook.url)
    execution_id = bench.record("SLOW")
    assert bench.runner(notifier=note).run(execution_id) == "failed"
    wait_for(lambda: hook.posts, "the post of the timed-out run")
    (post,) = hook.posts
    assert post.json["id"] == execution_id and post.json["failedPhase"] == "EXTRACT"
    assert post.json["message"].startswith("Timed out in EXTRACT")


def test_a_forked_child_sends_with_a_thread_of_its_own(hook: Receiver) -> None:
    """As in a prefork worker: the parent's thread is not in the child, which starts its own;
    the child's queue is its own (the parent's deliveries are the parent's to send)."""
    sender = Sender(timeout=30.0)
    os.register_at_fork(after_in_child=sender._forked)
    hook.hang = True
    assert sender.submit(Delivery(hook.url, b'{"from":"parent"}', {}, "parent"))
    assert hook.hanging.wait(DEADLINE)  # the parent's thread is busy with its post
    hook.hang = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads running
        pid = os.fork()
    if pid == 0:  # the child: its post must go through, while the parent's thread hangs
        code = 1
        try:
            sender.submit(Delivery(hook.url, b'{"from":"child"}', {}, "child"))
            code = 0 if sender.flush(10) and sender.counts.delivered == 1 else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    hook.release.set()
    assert sender.flush(DEADLINE)
    assert sorted(post.body for post in hook.posts) == [b'{"from":"child"}', b'{"from":"parent"}']
