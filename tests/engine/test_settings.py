"""The settings (`procexec.engine.settings.Settings`): read from the environment or from one
mapping alone, through the same checks; a value that cannot be used is one line naming the
variable and the value; immutable and hashable; cheap for what imports only the engine."""

from __future__ import annotations

import functools
import math
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from procexec.engine.settings import Settings, SettingsError


def test_a_mapping_given_is_read_alone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PROCEXEC_MAX_LOG_LINES", "20")
    monkeypatch.setenv("PROCEXEC_LOADER_QUEUE", "elsewhere")
    given = Settings.from_env({"PROCEXEC_DATA_DIR": str(tmp_path)})
    assert (given.max_log_lines, given.loader_queue) == (1000, "loader")
    assert Settings().max_log_lines == 1000  # built in code: its defaults, not the environment


def test_without_a_mapping_the_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROCEXEC_MAX_LOG_LINES", "20")
    monkeypatch.setenv("PROCEXEC_PROCESSES", "one, two")
    monkeypatch.setenv("PROCEXEC_READ_TIMEOUT_SECONDS", "2.5")
    monkeypatch.setenv("PROCEXEC_RETENTION_DAYS", "30")
    monkeypatch.setenv("procexec_loader_queue", "lower-case")  # not its variable
    found = Settings.from_env()
    assert found.max_log_lines == 20
    assert found.process_modules == ("one", "two")
    assert found.read_timeout == 2.5
    assert found.retention_days == 30
    assert found.loader_queue == "loader"


def test_the_new_settings_defaults_and_values(tmp_path: Path) -> None:
    base = {"PROCEXEC_DATA_DIR": str(tmp_path)}
    unset = Settings.from_env(base)
    assert (unset.loader_queue, unset.retention_days) == ("loader", 0)
    assert Settings.from_env({**base, "PROCEXEC_LOADER_QUEUE": " load "}).loader_queue == "load"
    for blank in ("", "  "):  # empty turns the hand-off off; it is not the default
        assert Settings.from_env({**base, "PROCEXEC_LOADER_QUEUE": blank}).loader_queue == ""
    assert Settings.from_env({**base, "PROCEXEC_RETENTION_DAYS": "0.5"}).retention_days == 0.5
    assert Settings.from_env({**base, "PROCEXEC_RETENTION_DAYS": ""}).retention_days == 0


def test_blank_is_the_default(tmp_path: Path) -> None:
    blank = {
        "PROCEXEC_DATA_DIR": str(tmp_path),
        "PROCEXEC_STORE_URL": "",
        "PROCEXEC_BROKER_URL": " ",
        "PROCEXEC_LOG_FLUSH_INTERVAL": "",
        "PROCEXEC_MAX_LOG_LINES": " ",
        "PROCEXEC_READ_TIMEOUT_SECONDS": "",
    }
    found = Settings.from_env(blank)
    assert found.store_url == f"sqlite:///{tmp_path / 'procexec.db'}"
    assert found.broker_url is None
    assert (found.log_flush_interval, found.max_log_lines, found.read_timeout) == (0.05, 1000, 10)
    assert Settings.from_env({"PROCEXEC_DATA_DIR": ""}).data_dir == Path(".procexec").absolute()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("PROCEXEC_LOG_FLUSH_INTERVAL", "abc", "'abc' is not a number"),
        ("PROCEXEC_LOG_FLUSH_INTERVAL", "0.001", "'0.001' must be at least 0.01"),
        ("PROCEXEC_LOST_RUN_TIMEOUT", "nan", "PROCEXEC_LOST_RUN_TIMEOUT: 'nan' is not a number"),
        ("PROCEXEC_REDISPATCH_AFTER", "-5", "PROCEXEC_REDISPATCH_AFTER: '-5' must be at least"),
        ("PROCEXEC_MAX_LOG_LINES", "9", "PROCEXEC_MAX_LOG_LINES: '9' must be at least 10"),
        ("PROCEXEC_MAX_LOG_LINES", "many", "PROCEXEC_MAX_LOG_LINES: 'many' is not a number"),
        ("PROCEXEC_RETENTION_DAYS", "-1", "PROCEXEC_RETENTION_DAYS: '-1' must be at least 0"),
        ("PROCEXEC_RETENTION_DAYS", "a week", "PROCEXEC_RETENTION_DAYS: 'a week' is not a number"),
        ("PROCEXEC_READ_TIMEOUT_SECONDS", "soon", "PROCEXEC_READ_TIMEOUT_SECONDS: 'soon' is not"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable_and_the_value(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"PROCEXEC_DATA_DIR": "/unused", variable: value})
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"{variable}: '{value}'")
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, ValueError)  # what callers caught before


def test_every_bad_value_is_named() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"PROCEXEC_MAX_LOG_LINES": "x", "PROCEXEC_RETENTION_DAYS": "-2"})
    assert str(caught.value) == (
        "PROCEXEC_MAX_LOG_LINES: 'x' is not a number; "
        "PROCEXEC_RETENTION_DAYS: '-2' must be at least 0"
    )


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        ("PROCEXEC_BROKER", "unknown setting PROCEXEC_BROKER (did you mean PROCEXEC_BROKER_URL?)"),
        (
            "PROCEXEC_RETENTION_DAY",
            "unknown setting PROCEXEC_RETENTION_DAY (did you mean PROCEXEC_RETENTION_DAYS?)",
        ),
        ("PROCEXEC_DATADIR", "unknown setting PROCEXEC_DATADIR (did you mean PROCEXEC_DATA_DIR?)"),
        ("PROCEXEC_TOKN", "unknown setting PROCEXEC_TOKN (did you mean PROCEXEC_TOKEN?)"),
        ("PROCEXEC_COLOUR", "unknown setting PROCEXEC_COLOUR"),  # nothing close
    ],
)
def test_an_unknown_variable_is_refused_with_the_closest_known_one(
    variable: str, message: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"PROCEXEC_DATA_DIR": "/unused", variable: "redis://127.0.0.1/0"})
    assert str(caught.value) == message


def test_every_unknown_variable_is_named_in_one_line() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"PROCEXEC_RETENTION_DAY": "3", "PROCEXEC_BROKER": "x"})
    assert str(caught.value) == (
        "unknown setting PROCEXEC_BROKER (did you mean PROCEXEC_BROKER_URL?); "
        "unknown setting PROCEXEC_RETENTION_DAY (did you mean PROCEXEC_RETENTION_DAYS?)"
    )


def test_the_client_s_and_the_test_suite_s_variables_are_known() -> None:
    others = {
        "PROCEXEC_URL": "http://127.0.0.1:8080",
        "PROCEXEC_TOKEN": "pe_x",
        "PROCEXEC_UID": "10001",
        "PROCEXEC_TEST_MONGODB_URI": "mongodb://127.0.0.1/x",
        "PROCEXEC_REQUIRE_REDIS": "1",
        "OTHER_VARIABLE": "not procexec's",
    }
    assert Settings.from_env(others).max_log_lines == 1000
    assert not Settings.known("PROCEXEC_TESTS")  # a prefix ends with its `_`
    assert not Settings.known("PROCEXEC_URLS")


def test_a_new_field_is_known_without_being_listed() -> None:
    assert _WithCount.known("PROCEXEC_COUNT") and not Settings.known("PROCEXEC_COUNT")
    assert all(Settings.known(variable) for variable in Settings.variables())


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("FALSE", False),
        (" no ", False),
        ("Yes", True),
        ("off", False),
        ("ON", True),
        ("0", False),
        ("1", True),
        ("", True),  # empty: the default
        ("  ", True),
    ],
)
def test_a_yes_or_no_takes_pydantic_s_spellings(value: str, expected: bool) -> None:
    assert Settings.from_env({"PROCEXEC_EXAMPLES": value}).examples is expected


@pytest.mark.parametrize("value", ["maybe", "flase", "2", "nope", "-"])
def test_any_other_yes_or_no_is_refused(value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"PROCEXEC_EXAMPLES": value})
    assert str(caught.value) == (
        f"PROCEXEC_EXAMPLES: '{value}' is neither true nor false (true/false, yes/no, on/off, 1/0)"
    )


@pytest.mark.parametrize(
    "url", ["postgres://x/y", "redis://bob:pw@x/0", "/var/lib/procexec.db", "sqlite:x"]
)
def test_a_store_url_procexec_does_not_take_is_refused_without_its_password(url: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"PROCEXEC_STORE_URL": url})
    message = str(caught.value)
    assert message.startswith("PROCEXEC_STORE_URL: '")
    assert message.endswith("is no store URL procexec takes: use sqlite:///… or mongodb://…")
    assert ":pw@" not in message


@pytest.mark.parametrize(
    "url", ["sqlite:///x.db", "sqlite:////abs/x.db", "mongodb://h/db", "mongodb+srv://h/db"]
)
def test_the_store_urls_procexec_takes(url: str) -> None:
    assert Settings.from_env({"PROCEXEC_STORE_URL": url}).store_url == url


class _WithCount(Settings):
    """A setting of a plain type, checked by pydantic alone."""

    count: int = 1


def test_a_value_pydantic_refuses_is_one_line_naming_the_variable_too() -> None:
    assert _WithCount.from_env({"PROCEXEC_COUNT": "7"}).count == 7
    with pytest.raises(SettingsError) as caught:
        _WithCount.from_env({"PROCEXEC_COUNT": "seven"})
    assert str(caught.value).startswith("PROCEXEC_COUNT: 'seven': Input should be a valid integer")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("value", ["2", "1e3", "10.7"])
def test_max_log_lines_is_a_whole_number(value: str) -> None:
    if float(value) < 10:
        with pytest.raises(SettingsError):
            Settings.from_env({"PROCEXEC_MAX_LOG_LINES": value})
    else:
        found = Settings.from_env({"PROCEXEC_MAX_LOG_LINES": value}).max_log_lines
        assert found == int(float(value)) and isinstance(found, int)


def test_settings_are_immutable_and_hashable(tmp_path: Path) -> None:
    one = Settings.from_env({"PROCEXEC_DATA_DIR": str(tmp_path), "PROCEXEC_PROCESSES": "a,b"})
    same = Settings.from_env({"PROCEXEC_DATA_DIR": str(tmp_path), "PROCEXEC_PROCESSES": "a, b"})
    other = Settings.from_env({"PROCEXEC_DATA_DIR": str(tmp_path), "PROCEXEC_PROCESSES": "a"})
    assert one == same and hash(one) == hash(same) and one != other
    with pytest.raises(ValidationError):
        one.max_log_lines = 5  # type: ignore[misc]
    calls: list[Settings] = []

    @functools.cache
    def built(settings: Settings) -> int:
        calls.append(settings)
        return len(calls)

    assert (built(one), built(same), built(other)) == (1, 1, 2)


def test_built_in_code_with_its_field_names(tmp_path: Path) -> None:
    built = Settings(data_dir=tmp_path, read_timeout=None, process_modules=("m",))
    assert built.store_url == f"sqlite:///{tmp_path / 'procexec.db'}"
    assert (built.read_timeout, built.process_modules) == (None, ("m",))
    assert built.model_copy(update={"read_timeout": 3.0}).read_timeout == 3.0
    assert Settings(read_timeout=math.inf).read_timeout is None


def test_each_variable_is_named_once() -> None:
    names = [Settings.env_name(field) for field in Settings.model_fields]
    assert len(set(names)) == len(names)
    assert Settings.env_name("process_modules") == "PROCEXEC_PROCESSES"
    assert Settings.env_name("read_timeout") == "PROCEXEC_READ_TIMEOUT_SECONDS"
    assert Settings.env_name("retention_days") == "PROCEXEC_RETENTION_DAYS"
    assert all(Settings.model_fields[field].description for field in Settings.model_fields)


def _imported_by(statement: str) -> set[str]:
    """The top-level packages outside the standard library that `statement` imports, in a
    fresh interpreter."""
    code = (
        f"import sys; {statement}; "
        "print(' '.join({m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {name for name in done.stdout.split() if name != "procexec" and name[0] != "_"}


def test_the_settings_import_pydantic_alone() -> None:
    """The settings' module imports no framework, store client or broker: only pydantic's."""
    found = _imported_by("import procexec.engine.settings")
    assert "pydantic_settings" in found
    assert found <= {
        "pydantic",
        "pydantic_core",
        "pydantic_settings",
        "annotated_types",
        "typing_extensions",
        "typing_inspection",
        "dotenv",
        "re2",  # the query language's regular expressions, which the engine's package loads
    }


def test_a_process_module_s_import_needs_no_settings() -> None:
    """`from procexec import Process` (the engine) imports pydantic, for the parameters, but
    not the settings."""
    found = _imported_by("import procexec.engine")
    assert "pydantic" in found
    assert not found & {"pydantic_settings", "dotenv"}, found
