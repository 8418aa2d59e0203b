"""End-to-end fixtures: a real worker and a real API over HTTP, on each broker in turn."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.harness import (
    Stack,
    attach_service_output,
    require_redis,
    service_env,
    start_api,
    start_worker,
    stop_all,
    wait_http,
    wait_worker_ready,
)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    attach_service_output(report, call)
    return report


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("embedded", id="embedded"),
        pytest.param("redis", id="redis", marks=pytest.mark.redis),
    ],
)
def broker_url(request: pytest.FixtureRequest) -> str | None:
    """None for the embedded transport; the real Redis (its test database flushed) otherwise."""
    return require_redis() if request.param == "redis" else None


@pytest.fixture(scope="module")
def stack(broker_url: str | None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("stack")
    data_dir = root / "data"
    env = service_env(data_dir, broker_url)
    # Started together: each takes a second or two to import.
    worker = start_worker(env, root, wait=False)
    api, url = start_api(env, root, wait=False)
    try:
        wait_worker_ready(worker)
        build = wait_http(api, url)
        assert build["broker"] == ("redis" if broker_url else "embedded")
        yield Stack(root, data_dir, env, url, api, worker)
    finally:
        stop_all(api, worker)
