"""A worker's own metrics (`workers.worker_metrics`): real runs of DEMO ended by the engine's
`PhaseRunner`, counted through prometheus-client's multiprocess files, and served on
`PROCEXEC_METRICS_PORT` as Prometheus's text format."""

from __future__ import annotations

import json
import re
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest, values
from prometheus_client.parser import text_string_to_metric_families

from procexec.engine.notify_sender import SENDER, Delivery
from procexec.engine.settings import Settings
from procexec.workers import worker_metrics
from procexec.workers.beat_metrics import BeatMetrics
from tests.engine.runs import open_bench
from tests.webhooks import receiver

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def metrics_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Metrics on, in a multiprocess folder of the test's; prometheus-client as it was after."""
    folder = tmp_path / "multiproc"
    folder.mkdir()
    monkeypatch.setenv(worker_metrics.MULTIPROC, str(folder))
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)
    monkeypatch.setattr(worker_metrics, "METRICS", None)
    monkeypatch.setattr(SENDER.counts, "watcher", None, raising=False)
    yield Settings.from_env(
        {"PROCEXEC_DATA_DIR": str(tmp_path), "PROCEXEC_METRICS_PORT": str(_free_port())}
    )


def scrape(settings: Settings) -> str:
    """What the worker's metrics server (`worker_metrics.serve`) answers once."""
    server, _thread = worker_metrics.serve(settings)
    try:
        url = f"http://127.0.0.1:{settings.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            return str(answer.read().decode())
    finally:
        server.shutdown()
        server.server_close()


def test_without_a_port_no_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_metrics, "METRICS", None)
    settings = Settings.from_env({"PROCEXEC_DATA_DIR": str(tmp_path)})
    assert worker_metrics.prepare(settings) is None
    assert worker_metrics.serve(settings) is None
    worker_metrics.ended({"name": "DEMO"})  # nothing counted, nothing raised


def test_runs_of_each_outcome_are_served(metrics_on: Settings, tmp_path: Path) -> None:
    assert worker_metrics.prepare(metrics_on) is not None
    with open_bench(tmp_path) as bench:
        ok = bench.record("DEMO", {"log_lines": 2})
        failed = bench.record("DEMO", {"fail_in": "SEND"})
        runner = bench.runner()
        assert runner.run(ok) == "success"
        assert runner.run(failed) == "failed"
        for execution_id in (ok, failed):
            worker_metrics.ended(bench.store.get(execution_id))
        trigger = bench.doc(ok)["trigger"]
        phases = [phase["name"] for phase in bench.doc(ok)["phases"]]
    text = scrape(metrics_on)
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    for status in ("success", "failed"):
        key = (("process", "DEMO"), ("status", status), ("trigger", trigger))
        assert samples[("procexec_runs_ended_total", key)] == 1
    first = (("phase", phases[0]), ("process", "DEMO"), ("status", "success"))
    assert samples[("procexec_phase_duration_seconds_count", first)] == 2
    assert ("procexec_webhook_deliveries_total", (("outcome", "delivered"),)) in samples


def test_the_dashboard_names_only_metrics_a_scrape_shows(
    metrics_on: Settings, tmp_path: Path
) -> None:
    """docs/grafana-dashboard.json: valid JSON, each metric its queries name in a real scrape
    of the API's `/metrics`, a worker's or the beat's."""
    from fastapi.testclient import TestClient

    from procexec.workers.queue_depth import queue_depth
    from tests.api.api_helpers import Dispatcher, start_service

    dashboard = json.loads((ROOT / "docs/grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    named = {name for expr in exprs for name in re.findall(r"procexec_[a-z_]+", expr)}
    assert worker_metrics.prepare(metrics_on) is not None
    with open_bench(tmp_path) as bench:
        run = bench.record("DEMO", {"log_lines": 1})
        assert bench.runner().run(run) == "success"
        worker_metrics.ended(bench.store.get(run))
    server, _thread = worker_metrics.serve(metrics_on)
    try:
        url = f"http://127.0.0.1:{metrics_on.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            texts = [answer.read().decode()]
    finally:
        server.shutdown()
        server.server_close()
    api = Settings.from_env({"PROCEXEC_DATA_DIR": str(tmp_path / "api")})
    service = start_service(api, Dispatcher())
    try:
        # the embedded broker's queue depth, as an API that sends through Celery reads it
        depth = queue_depth(api)
        assert depth is not None and depth() == {"procexec": 0, "loader": 0}
        service.app.state.metrics.collector.queue_depth = depth
        with TestClient(service.app) as client:
            client.get("/healthz")
            texts.append(client.get("/metrics").text)
    finally:
        service.store.close()
    beat = BeatMetrics()
    beat.fired({"ECB_FX": 1})
    texts.append(generate_latest(beat.registry).decode())
    families = [family for text in texts for family in text_string_to_metric_families(text)]
    shown = {sample.name for family in families for sample in family.samples}
    # a family without samples yet (no run in the API's store) still declares itself
    shown |= {family.name + ("_total" if family.type == "counter" else "") for family in families}
    assert named - shown == set()
    assert len(named) >= 10


def scraped(text: str, name: str) -> dict[str, float]:
    """The samples of counter `name` in `text`, by their `outcome`."""
    return {
        sample.labels["outcome"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def test_a_delivery_is_counted_as_it_is_made_not_at_the_next_run_s_end(
    metrics_on: Settings,
) -> None:
    """A failed run's notification is posted after the run ended: the worker's figure shows it
    without waiting for another run to end."""
    assert worker_metrics.prepare(metrics_on) is not None
    with receiver() as hook:
        assert SENDER.submit(Delivery(hook.url, b"{}", {}, "failed DEMO 1"))
        assert SENDER.flush(10)
        assert len(hook.posts) == 1
    text = scrape(metrics_on)
    counts = scraped(text, "procexec_webhook_deliveries_total")
    assert counts == {"delivered": 1, "retried": 0, "failed": 0, "dropped": 0}


def test_the_beat_counts_its_deliveries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The beat tells of lost runs and missed fire times: its own figure counts them."""
    monkeypatch.setattr(SENDER.counts, "watcher", None, raising=False)
    beat = BeatMetrics()
    with receiver() as hook:
        hook.script = [500]  # its last try (the third) refused: given up
        assert SENDER.submit(Delivery(hook.url, b"{}", {}, "lost DEMO 1", tries=2))
        assert SENDER.flush(10)
    counts = scraped(generate_latest(beat.registry).decode(), "procexec_webhook_deliveries_total")
    assert counts == {"delivered": 0, "retried": 0, "failed": 1, "dropped": 0}
