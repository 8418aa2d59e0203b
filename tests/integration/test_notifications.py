"""A real Celery worker (prefork: its runs in forked children) on Redis posts a signed webhook
for a failed DEMO run to a real receiver in the test, once, tried again while the receiver
answers 500; its log tells each outcome without the URL's path or the secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from procexec.engine.settings import Settings
from procexec.service import build
from tests.integration.harness import PrivateRedis, service_env, start_worker, stop_all
from tests.webhooks import receiver

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

SECRET = "the-operator-s-s3cret"
PUBLIC = "https://procexec.example.com"


def test_a_worker_posts_one_signed_webhook_per_failed_run(tmp_path: Path) -> None:
    redis = PrivateRedis(tmp_path / "redis").start()
    try:
        with receiver() as hook:
            hook.script = [500]  # the first try fails: tried again after a second
            env = service_env(
                tmp_path / "data",
                redis.url,
                PROCEXEC_NOTIFY_URL=hook.url,
                PROCEXEC_NOTIFY_SECRET=SECRET,
                PROCEXEC_PUBLIC_URL=PUBLIC,
            )
            worker = start_worker(env, tmp_path / "logs", pool="prefork", concurrency=1)
            try:
                settings = Settings.from_env(env)
                service = build(settings)
                doc = service.triggers.trigger(
                    "DEMO", run_as="test", environment="production", body={"fail_in": "LOAD"}
                )
                execution_id = str(doc["_id"])
                first, second = hook.wait_for(2, timeout=60)
                final = service.store.get(execution_id)
                service.store.close()
            finally:
                stop_all(worker)
            output = worker.output()
            assert len(hook.posts) == 2, output  # delivered on the retry: no third
    finally:
        redis.stop()
    assert final is not None and final["status"] == "failed"
    assert first.body == second.body
    assert first.signed_with(SECRET) and second.signed_with(SECRET)
    body = first.json
    assert (body["event"], body["id"], body["name"]) == ("finished", execution_id, "DEMO")
    assert (body["status"], body["failedPhase"]) == ("failed", "LOAD")
    assert body["message"] == final["message"]
    assert body["link"] == f"{PUBLIC}/service/process-exec/v1/{execution_id}"
    shown = hook.url.removesuffix("/hook") + "/…"
    assert f"to {shown}: HTTP 500 (attempt 1 of 3); retrying in 1 s" in output
    assert f"to {shown}: delivered (attempt 2 of 3)" in output
    assert SECRET not in output and "/hook" not in output
