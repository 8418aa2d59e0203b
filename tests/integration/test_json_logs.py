"""`PROCEXEC_LOG_FORMAT=json`: the service's own lines are one JSON object each, the API's
(uvicorn's, its access lines included) and the worker's, and those about a run name its
execution id and process; the banner and Celery's own start-up text stay as they are."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from procexec.engine.log_format import JsonFormatter, run_logged
from tests.integration.harness import (
    api_client,
    service_env,
    start_standalone,
    trigger,
    wait_terminal,
)


def _objects(text: str) -> list[dict[str, Any]]:
    """The lines of `text` that are JSON objects."""
    found = []
    for line in text.splitlines():
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


def test_a_line_names_the_run_its_thread_works_on_and_keeps_its_traceback() -> None:
    formatter = JsonFormatter()
    logger = logging.getLogger("procexec.test_json_logs")
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        logger.warning("outside %s", "any run")
        with run_logged("run-1", "ECB_FX"):
            try:
                raise ValueError('bad "input"\nsecond line')
            except ValueError:
                logger.exception("phase %s failed", "EXTRACT")
        logger.info("named", extra={"execution_id": "run-2"})
    finally:
        logger.removeHandler(handler)
    outside, failed, named = (json.loads(line) for line in written.getvalue().splitlines())
    assert outside["message"] == "outside any run" and outside["level"] == "warning"
    assert outside["logger"] == "procexec.test_json_logs"
    assert "execution_id" not in outside and "process" not in outside
    assert (failed["execution_id"], failed["process"]) == ("run-1", "ECB_FX")
    assert failed["message"] == "phase EXTRACT failed" and failed["level"] == "error"
    assert 'ValueError: bad "input"\nsecond line' in failed["exception"]
    assert named["execution_id"] == "run-2" and "process" not in named
    # Celery's lines about a run's task (received, succeeded, raised) name it by their arguments
    received = logging.LogRecord(
        "celery.worker.strategy",
        logging.INFO,
        __file__,
        1,
        "Task %(name)s[%(id)s] received",
        None,
        None,
    )
    received.args = {"name": "procexec.run", "id": "run-3"}
    assert json.loads(formatter.format(received))["execution_id"] == "run-3"
    assert failed["time"].endswith("Z") and len(failed["time"]) == len("2026-12-07T22:00:00.000Z")


@pytest.mark.e2e
def test_standalone_logs_json_lines_with_the_run_they_concern(tmp_path: Path) -> None:
    env = service_env(tmp_path / "data", PROCEXEC_LOG_FORMAT="json")
    standalone, url, token = start_standalone(env, tmp_path)
    try:
        with api_client(url, token) as client:
            execution_id = trigger(client, "DEMO", {"fail_in": "TRANSFORM", "sleep": 0})
            doc = wait_terminal(client, execution_id)
        assert doc["status"] == "failed", doc
        objects = _objects(standalone.output())
        about = [line for line in objects if line.get("execution_id") == execution_id]
        assert about, standalone.tail()
        # the worker's lines name the process too; Celery's own (received, raised) the id alone
        assert {line.get("process") for line in about} == {"DEMO", None}
        # the worker's own line for the run's end, and uvicorn's lines, as JSON
        assert any(line["message"].endswith("finished failed") for line in about), about
        assert any(line["logger"] == "celery.app.trace" for line in about), about
        assert any(line["logger"] == "uvicorn.access" for line in objects), standalone.tail()
        assert any(line["logger"].startswith("celery") for line in objects), standalone.tail()
    finally:
        standalone.stop()
