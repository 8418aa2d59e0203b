"""The beat's own metrics on `PROCEXEC_BEAT_METRICS_PORT`: scheduled runs it fired, by
process, lost runs its housekeeping found, triggers sent again; none without the setting."""

from __future__ import annotations

import socket
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from procexec.engine.housekeeping import Report
from procexec.engine.query import parse_query
from procexec.engine.settings import Settings
from procexec.engine.timeutil import iso_ms
from procexec.workers.beat import ProcessScheduler
from procexec.workers.celery_app import make_celery

MODULE = """
from procexec import Process

every_minute = Process("EVERY_MINUTE", schedule="* * * * *")


@every_minute.phase("EXTRACT")
def extract(ctx, previous):
    return None
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **extra: str) -> Settings:
    (tmp_path / "beat_metrics_processes.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return Settings.from_env(
        {
            "PROCEXEC_DATA_DIR": str(tmp_path / "data"),
            "PROCEXEC_PROCESSES": "beat_metrics_processes",
            "PROCEXEC_EXAMPLES": "false",
            **extra,
        }
    )


def _samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def fire_due(beat: ProcessScheduler) -> list[dict[str, Any]]:
    """EVERY_MINUTE last fired two minutes ago: one tick fires what is due since (its runs)."""
    store = beat.service.store
    minute = datetime.now(UTC).replace(second=0, microsecond=0)
    assert store.advance_schedule("EVERY_MINUTE", iso_ms(minute - timedelta(minutes=2)))
    beat.tick()
    runs, _ = store.list(parse_query([("name", "EVERY_MINUTE"), ("_limit", "-1")]))
    assert runs, "the tick fired no run"
    return runs


def test_the_beat_serves_its_fires_lost_runs_and_triggers_sent_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = _free_port()
    settings = _settings(tmp_path, monkeypatch, PROCEXEC_BEAT_METRICS_PORT=str(port))
    beat = ProcessScheduler(make_celery(settings), lazy=True)
    assert beat.metrics is not None
    before = _samples(port)
    assert before[("procexec_lost_runs_total", (("outcome", "resumed"),))] == 0
    assert not any(name == "procexec_beat_fires_total" for name, _ in before)

    runs = fire_due(beat)
    beat.metrics.housekept(Report(resumed=["a"], failed=["b", "c"], redispatched=["d"]))

    after = _samples(port)
    assert after[("procexec_beat_fires_total", (("process", "EVERY_MINUTE"),))] == len(runs)
    assert after[("procexec_lost_runs_total", (("outcome", "resumed"),))] == 1
    assert after[("procexec_lost_runs_total", (("outcome", "failed"),))] == 2
    assert after[("procexec_triggers_resent_total", (("kind", "run"),))] == 1
    assert after[("procexec_triggers_resent_total", (("kind", "load"),))] == 0


def test_without_the_setting_the_beat_serves_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    beat = ProcessScheduler(make_celery(_settings(tmp_path, monkeypatch)), lazy=True)
    assert beat.metrics is None
    beat.tick()  # fires and keeps house without counting


def test_the_figures_served_are_those_of_the_scheduler_that_ticks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`celery beat` makes a lazy scheduler for its banner (celery.apps.beat's startup_info),
    then the one that ticks: what the second counts is what the port serves."""
    port = _free_port()
    settings = _settings(tmp_path, monkeypatch, PROCEXEC_BEAT_METRICS_PORT=str(port))
    app = make_celery(settings)
    banner = ProcessScheduler(app, lazy=True)
    beat = ProcessScheduler(app)
    assert beat.metrics is not None and banner.metrics is not None
    runs = fire_due(beat)
    fired = _samples(port).get(("procexec_beat_fires_total", (("process", "EVERY_MINUTE"),)))
    assert fired == len(runs)
