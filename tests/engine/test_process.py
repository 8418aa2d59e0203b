"""Process definitions, the registry, and the registry that the settings describe."""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from procexec.engine.errors import BadRequest
from procexec.engine.plugins import load_registry
from procexec.engine.process import Process, ProcessRegistry
from procexec.engine.runner import PhaseRunner
from procexec.engine.settings import Settings
from procexec.engine.store.base import ExecutionStore
from procexec.engine.trigger_service import TriggerService

MODULE_SOURCE = """
from procexec import Process

HELLO = Process("{name}", service="OPS", schedule="0 6 * * *", defaults={{"who": "world"}})


@HELLO.phase("extract")
def extract(ctx, previous):
    ctx.info("hello " + ctx.params["who"])
    return 1


@HELLO.phase("load")
def load(ctx, previous):
    ctx.loader_message("loaded " + str(previous))
    return previous
"""

WriteModule = Callable[[str], str]


@pytest.fixture
def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WriteModule]:
    """Writes a module of processes under tmp_path, importable for this test only."""
    folder = tmp_path / "modules"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    names: list[str] = []

    def write(source: str) -> str:
        name = f"procexec_test_{uuid.uuid4().hex[:10]}"
        (folder / f"{name}.py").write_text(source)
        names.append(name)
        return name

    yield write
    for name in names:
        sys.modules.pop(name, None)


def settings_for(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"PROCEXEC_DATA_DIR": str(tmp_path), **env})


# --- load_registry ---------------------------------------------------------------------------


def test_the_examples_are_loaded_by_default(tmp_path: Path) -> None:
    registry = load_registry(settings_for(tmp_path))
    assert [process.name for process in registry] == ["DEMO", "ECB_FX", "ECB_FX_CROSS"]
    assert len(registry) == 3
    ecb = registry.get("ECB_FX")
    assert ecb is not None
    assert [phase.name for phase in ecb.phases] == ["EXTRACT", "TRANSFORM", "SEND", "LOAD"]
    assert ecb.schedule == "30 16 * * 1-5"
    assert ecb.service == "ETL"


@pytest.mark.parametrize("value", ["false", "FALSE", "0", "no", "off", " False "])
def test_examples_turned_off(tmp_path: Path, value: str) -> None:
    registry = load_registry(settings_for(tmp_path, PROCEXEC_EXAMPLES=value))
    assert len(registry) == 0
    assert list(registry) == []
    assert "ECB_FX" not in registry
    assert registry.get("DEMO") is None


@pytest.mark.parametrize("value", ["true", "1", "yes", "on"])
def test_examples_turned_on(tmp_path: Path, value: str) -> None:
    registry = load_registry(settings_for(tmp_path, PROCEXEC_EXAMPLES=value))
    assert [process.name for process in registry] == ["DEMO", "ECB_FX", "ECB_FX_CROSS"]


def test_a_configured_module_adds_its_processes(tmp_path: Path, write_module: WriteModule) -> None:
    module = write_module(MODULE_SOURCE.format(name="HELLO"))
    registry = load_registry(settings_for(tmp_path, PROCEXEC_PROCESSES=module))
    assert [process.name for process in registry] == ["DEMO", "ECB_FX", "ECB_FX_CROSS", "HELLO"]
    hello = registry.get("HELLO")
    assert hello is not None
    assert [phase.name for phase in hello.phases] == ["EXTRACT", "LOAD"]
    assert (hello.service, hello.schedule) == ("OPS", "0 6 * * *")

    only = load_registry(settings_for(tmp_path, PROCEXEC_PROCESSES=module, PROCEXEC_EXAMPLES="0"))
    assert [process.name for process in only] == ["HELLO"]


def test_several_modules_separated_by_commas(tmp_path: Path, write_module: WriteModule) -> None:
    first = write_module(MODULE_SOURCE.format(name="FIRST"))
    second = write_module(MODULE_SOURCE.format(name="SECOND"))
    settings = settings_for(
        tmp_path, PROCEXEC_PROCESSES=f" {first} ,{second},, ", PROCEXEC_EXAMPLES="false"
    )
    assert settings.process_modules == (first, second)
    assert [process.name for process in load_registry(settings)] == ["FIRST", "SECOND"]


def test_a_process_from_a_module_runs(
    tmp_path: Path, write_module: WriteModule, sqlite_store: ExecutionStore
) -> None:
    module = write_module(MODULE_SOURCE.format(name="HELLO"))
    registry = load_registry(settings_for(tmp_path, PROCEXEC_PROCESSES=module))
    triggers = TriggerService(sqlite_store, registry, lambda execution_id, delay: None)
    execution_id = triggers.trigger(
        "HELLO", run_as="ops", environment="production", body={"who": "procexec"}
    )["_id"]
    assert PhaseRunner(sqlite_store, registry).run(execution_id) == "success"
    doc = sqlite_store.get(execution_id)
    assert doc is not None
    assert doc["service"] == "OPS"
    assert doc["loaderMessage"] == "loaded 1"
    assert re.match(r"^\S+Z\[UTC\] info hello procexec$", doc["phases"][0]["log"][0])
    assert doc["phases"][1]["log"] == ["loaded 1"]


def test_a_missing_module_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = f"procexec_no_such_module_{uuid.uuid4().hex[:8]}"
    with pytest.raises(RuntimeError) as caught:
        load_registry(settings_for(tmp_path, PROCEXEC_PROCESSES=missing))
    assert f"'{missing}'" in str(caught.value)
    assert str(caught.value).startswith("PROCEXEC_PROCESSES: cannot import module")


def test_a_module_without_processes_is_an_error(tmp_path: Path, write_module: WriteModule) -> None:
    empty = write_module("VALUE = 1\n")
    with pytest.raises(RuntimeError, match=f"module '{empty}' defines no Process"):
        load_registry(settings_for(tmp_path, PROCEXEC_PROCESSES=empty))


def test_a_module_redefining_an_example_is_an_error(
    tmp_path: Path, write_module: WriteModule
) -> None:
    clash = write_module(MODULE_SOURCE.format(name="ECB_FX"))
    with pytest.raises(ValueError, match="two processes are called ECB_FX"):
        load_registry(settings_for(tmp_path, PROCEXEC_PROCESSES=clash))
    # without the examples it is fine
    registry = load_registry(
        settings_for(tmp_path, PROCEXEC_PROCESSES=clash, PROCEXEC_EXAMPLES="0")
    )
    ecb = registry.get("ECB_FX")
    assert ecb is not None and ecb.service == "OPS"


def test_settings_defaults(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    assert settings.data_dir == tmp_path
    assert settings.store_url == f"sqlite:///{tmp_path / 'procexec.db'}"
    assert settings.store_kind == "sqlite"
    assert settings.broker_url is None
    assert settings.broker_kind == "embedded"
    assert settings.process_modules == ()
    assert settings.examples is True
    assert settings.log_flush_interval == 0.05
    other = settings_for(
        tmp_path,
        PROCEXEC_STORE_URL="mongodb://db:27017/procexec",
        PROCEXEC_BROKER_URL="redis://broker:6379/0",
        PROCEXEC_LOG_FLUSH_INTERVAL="0.5",
    )
    assert (other.store_kind, other.broker_kind, other.log_flush_interval) == (
        "mongodb",
        "redis",
        0.5,
    )


# --- Process -----------------------------------------------------------------------------------


def _noop(ctx: Any, previous: Any) -> Any:
    return previous


def test_phases_are_kept_in_order_and_upper_cased() -> None:
    process = Process("ORDERED")
    for name in ("extract", "Transform", "SEND", "load"):
        process.phase(name)(_noop)
    assert [phase.name for phase in process.phases] == ["EXTRACT", "TRANSFORM", "SEND", "LOAD"]
    assert all(phase.function is _noop for phase in process.phases)


@pytest.mark.parametrize("second", ["LOAD", "load", "Load"])
def test_duplicate_phase_names_are_rejected(second: str) -> None:
    process = Process("TWICE")
    process.phase("LOAD")(_noop)
    with pytest.raises(ValueError, match="process TWICE already has a phase LOAD"):
        process.phase(second)
    assert [phase.name for phase in process.phases] == ["LOAD"]


@pytest.mark.parametrize(
    "name", ["", " ", "has space", "-leading", ".leading", "a/b", "ECB FX", "ÉCB", "x\n", "a;b"]
)
def test_invalid_process_names_are_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="invalid process name"):
        Process(name)


@pytest.mark.parametrize("name", ["ECB_FX", "DEMO", "a.b-c", "9LIVES", "_private", "x"])
def test_valid_process_names(name: str) -> None:
    assert Process(name).name == name


def test_parameters_are_the_defaults_overridden_by_the_body() -> None:
    defaults = {"sleep": 0, "fail_in": None}
    process = Process("PARAMS", defaults=defaults)
    assert process.parameters(None) == {"sleep": 0, "fail_in": None}
    assert process.parameters({}) == {"sleep": 0, "fail_in": None}
    assert process.parameters({"sleep": [2], "fail_in": {"a": 1}}) == {
        "sleep": [2],  # plain defaults take any JSON value
        "fail_in": {"a": 1},
    }
    with pytest.raises(
        BadRequest, match=r"^body.extra: unknown parameter; PARAMS takes fail_in, sleep$"
    ):
        process.parameters({"sleep": 2, "extra": [1]})
    parameters = process.parameters({"sleep": 5})
    parameters["fail_in"] = "LOAD"
    assert defaults == {"sleep": 0, "fail_in": None}


# --- ProcessRegistry ---------------------------------------------------------------------------


def test_registry_rejects_processes_without_phases() -> None:
    with pytest.raises(ValueError, match="process EMPTY has no phases"):
        ProcessRegistry([Process("EMPTY")])


def test_registry_rejects_two_processes_of_one_name() -> None:
    first, second = Process("SAME"), Process("SAME")
    first.phase("LOAD")(_noop)
    second.phase("LOAD")(_noop)
    registry = ProcessRegistry([first])
    with pytest.raises(ValueError, match="two processes are called SAME"):
        registry.add(second)
    assert registry.get("SAME") is first
    registry.add(first)  # the same definition again is harmless
    assert len(registry) == 1


def test_registry_lookup_and_order() -> None:
    processes = []
    for name in ("ZED", "ALPHA", "MID"):
        process = Process(name)
        process.phase("LOAD")(_noop)
        processes.append(process)
    registry = ProcessRegistry(processes)
    assert [process.name for process in registry] == ["ALPHA", "MID", "ZED"]
    assert "MID" in registry and "mid" not in registry and 3 not in registry
    assert registry.get("ALPHA") is processes[1]
    assert registry.get("NOPE") is None
