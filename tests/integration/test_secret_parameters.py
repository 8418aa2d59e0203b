"""A secret parameter (`SecretStr`) reaches its phase in clear and is shown nowhere: not in
`procexec run`'s output (the phase logging `ctx.params` included), not in the task message a
trigger sends the broker (its arguments are the execution's id and its process's name; what
Flower and Celery's events show adds the parameters, the secret masked), not in a worker's own
log lines at DEBUG, not in the execution document."""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from procexec.engine.process import ProcessRegistry
from procexec.engine.settings import Settings
from procexec.engine.store import open_store
from procexec.engine.store.base import ExecutionStore
from procexec.engine.trigger_service import TriggerService
from procexec.workers import celery_app
from procexec.workers.celery_app import QUEUE, RUN_TASK, celery_dispatch
from tests.integration.harness import (
    Service,
    service_env,
    stop_all,
    wait_stored_end,
    wait_worker_ready,
)
from tests.integration.test_run_command import one_line, procexec_run

pytestmark = pytest.mark.e2e

SECRET = "s3cr3t-Ap1-k3y"
#: what the phase reports of the key it got: its length and the start of its SHA-256
FINGERPRINT = f"key of {len(SECRET)} characters, {hashlib.sha256(SECRET.encode()).hexdigest()[:12]}"

MODULE = """
import hashlib
import logging

from pydantic import BaseModel, Field, SecretStr

from procexec import PhaseContext, Process

logger = logging.getLogger("procexec.engine.keyed")


class KeyedParams(BaseModel):
    who: str = "world"
    api_key: SecretStr = Field(min_length=8)
    fail: bool = False


KEYED = Process("KEYED", params=KeyedParams)


@KEYED.phase("EXTRACT")
def extract(ctx: PhaseContext, _):
    ctx.info(f"params: {ctx.params!r}")  # pydantic's repr masks the secret
    ctx.info(f"api_key: {ctx.params.api_key}")
    logger.info("KEYED runs with %s", ctx.params)
    if ctx.params.fail:
        raise RuntimeError(f"refused with {ctx.params}")
    return ctx.params.api_key.get_secret_value()


@KEYED.phase("LOAD")
def load(ctx: PhaseContext, key):
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    ctx.loader_message(f"key of {len(key)} characters, {digest}")
"""


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`keyed.py`, a process with a secret parameter, in `tmp_path` (importable here too)."""
    (tmp_path / "keyed.py").write_text(MODULE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("keyed", None)
    return tmp_path


def test_procexec_run_hands_the_secret_to_the_phase_and_prints_it_nowhere(module: Path) -> None:
    done = procexec_run("KEYED", "--module", "keyed", "--param", f"api_key={SECRET}", cwd=module)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert SECRET not in output
    assert "  EXTRACT | info params: KeyedParams(who='world', api_key=SecretStr('**********')" in (
        output
    )
    assert "  EXTRACT | info api_key: **********" in output
    assert done.stdout.splitlines()[-1] == f"loaderMessage: {FINGERPRINT}"

    failed = procexec_run(
        "KEYED",
        "--module",
        "keyed",
        "--param",
        f"api_key={SECRET}",
        "--param",
        "fail=true",
        cwd=module,
    )
    assert failed.returncode == 1
    assert "KEYED failed: Failed in EXTRACT: RuntimeError: refused with who='world'" in (
        failed.stdout
    )
    assert SECRET not in failed.stdout + failed.stderr

    line = one_line(
        procexec_run("KEYED", "--module", "keyed", "--param", "api_key=tiny", cwd=module)
    )
    assert line.startswith("procexec: KEYED: body.api_key: Value should have at least 8 items")
    assert "tiny" not in line


@pytest.fixture
def embedded(module: Path) -> Iterator[tuple[Settings, ExecutionStore, dict[str, str]]]:
    """Settings and a store on the embedded broker, and the environment of a worker that
    loads `keyed`."""
    data_dir = module / "data"
    env = service_env(data_dir, PROCEXEC_PROCESSES="keyed", PYTHONPATH=str(module))
    settings = Settings.from_env(env)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(settings.store_url)
    yield settings, store, env
    store.close()
    celery_app._shared_app(settings).close()
    celery_app._shared_app.cache_clear()


def _messages(settings: Settings) -> list[str]:
    queue = settings.data_dir / "broker" / "queue"
    return [path.read_text() for path in sorted(queue.iterdir()) if path.name.endswith(".msg")]


def test_a_worker_runs_with_the_secret_which_no_task_message_or_log_line_holds(
    embedded: tuple[Settings, ExecutionStore, dict[str, str]], tmp_path: Path
) -> None:
    settings, store, env = embedded
    import keyed  # type: ignore[import-not-found]

    triggers = TriggerService(store, ProcessRegistry([keyed.KEYED]), celery_dispatch(settings))
    doc = triggers.trigger(
        "KEYED", run_as="erin", environment="production", body={"api_key": SECRET}
    )
    assert store.get_meta(doc["_id"])["input"]["api_key"] == SECRET  # for the worker alone

    # the task message waiting in the queue: the id and the process's name, nothing else
    [message] = _messages(settings)
    assert SECRET not in message
    parsed = json.loads(message)
    assert parsed["headers"]["task"] == RUN_TASK
    assert parsed["properties"]["delivery_info"]["routing_key"] == QUEUE
    body = base64.b64decode(parsed["body"]).decode()
    assert SECRET not in body
    args, kwargs, _ = json.loads(body)
    assert args == [] and kwargs == {"execution_id": doc["_id"], "process": "KEYED"}
    # what Flower and Celery's events show of the task's arguments
    assert parsed["headers"]["argsrepr"] == "()"
    shown = parsed["headers"]["kwargsrepr"]
    assert SECRET not in shown
    # the run's parameters are shown there too, the secret masked
    assert "'parameters': {'who': 'world', 'api_key': '**********', 'fail': False}" in shown

    argv = [sys.executable, "-m", "procexec.cli", "worker", "--pool", "threads"]
    argv += ["--log-level", "DEBUG", "--hostname", f"keyed-{doc['_id'][:8]}@%h"]
    worker = Service("worker", argv, env=env, log_dir=tmp_path)
    try:
        wait_worker_ready(worker)
        done = wait_stored_end(store, doc["_id"])
    finally:
        stop_all(worker)
    assert done["status"] == "success", done
    assert done["loaderMessage"] == FINGERPRINT  # the phase got the secret in clear
    assert SECRET not in json.dumps(done)
    output = worker.output()
    assert f"Task {RUN_TASK}[{doc['_id']}] received" in output
    assert "KEYED runs with who='world' api_key=SecretStr('**********')" in output
    assert SECRET not in output
