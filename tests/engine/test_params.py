"""A process's parameters (`engine.params`): a trigger's body validated in pydantic's default
mode against the declared model or the plain defaults, unknown names refused, every field
named in one message, secrets recorded for the worker but never shown or echoed, the
service's own keys kept apart, and a definition its own parameters refuse failing at once."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from procexec.engine.errors import BadRequest
from procexec.engine.params import MAX_ERRORS_SHOWN, revealed
from procexec.engine.process import Process, ProcessRegistry
from procexec.engine.scheduler import change_process
from procexec.engine.store.base import ExecutionStore


class Window(BaseModel):
    start: dt.date
    days: int = 1


class Prices(BaseModel):
    date: dt.date
    window: Window | None = None
    source: str = Field("ecb", alias="from")
    api_key: SecretStr = SecretStr("default-secret")
    ratio: float = 1.0


def _process(**options: Any) -> Process:
    process = Process("PRICES", **options)
    process.phase("LOAD")(lambda ctx, previous: None)
    return process


def test_values_are_taken_in_pydantic_s_default_mode() -> None:
    process = _process(params=Prices)
    recorded = process.parameters(
        {"date": "2024-01-02", "ratio": "2", "window": {"start": "2024-01-01", "days": "3"}}
    )
    assert recorded == {
        "date": "2024-01-02",
        "window": {"start": "2024-01-01", "days": 3},
        "from": "ecb",
        "api_key": "default-secret",  # recorded in clear, for the worker
        "ratio": 2.0,
    }
    arguments = process.arguments(recorded)
    assert isinstance(arguments, Prices)
    assert arguments.date == dt.date(2024, 1, 2)
    assert arguments.window == Window(start=dt.date(2024, 1, 1), days=3)
    assert arguments.api_key.get_secret_value() == "default-secret"


def test_each_wrong_field_is_named_in_one_message() -> None:
    process = _process(params=Prices)
    with pytest.raises(BadRequest) as refused:
        process.parameters({"date": "someday", "ratio": [], "window": {"days": 1.5}})
    message = str(refused.value)
    assert message.startswith("body.date: Input should be a valid date")
    assert "(got 'someday')" in message
    assert "body.window.start: required" in message
    assert "body.window.days: Input should be a valid integer, got a number with a" in message
    assert "body.ratio: Input should be a valid number" in message


def test_a_missing_required_parameter_is_named() -> None:
    with pytest.raises(BadRequest, match=r"^body.date: required$"):
        _process(params=Prices).parameters({})


def test_unknown_names_are_refused_whatever_the_model_s_extra_setting() -> None:
    process = _process(params=Prices)  # pydantic's own default would ignore them
    with pytest.raises(BadRequest) as refused:
        process.parameters({"date": "2024-01-02", "dat": 1, "source": "x"})
    assert str(refused.value) == (
        "body.dat: unknown parameter (did you mean 'date'?); body.source: unknown parameter; "
        "PRICES takes api_key, date, from, ratio, window"
    )


def test_unknown_names_inside_a_nested_model_are_refused_too() -> None:
    class Source(BaseModel):
        windows: list[Window] = []
        named: dict[str, Window] = {}

    process = _process(params=Prices)
    with pytest.raises(BadRequest) as refused:
        process.parameters({"date": "2024-01-02", "window": {"start": "2024-01-01", "dayz": 3}})
    assert str(refused.value) == (
        "body.window.dayz: unknown field (did you mean 'days'?); "
        "PRICES takes api_key, date, from, ratio, window"
    )
    with pytest.raises(BadRequest) as refused:
        process.parameters(
            {"date": "2024-01-02", "dat": 1, "window": {"start": "2024-01-01", "x": 1}}
        )
    assert str(refused.value).startswith(
        "body.dat: unknown parameter (did you mean 'date'?); body.window.x: unknown field; "
    )
    with pytest.raises(BadRequest) as refused:  # told with what is wrong, in one message
        process.parameters({"date": "2024-01-02", "window": {"start": "soon", "dayz": 3}})
    assert str(refused.value).startswith(
        "body.window.dayz: unknown field (did you mean 'days'?); body.window.start: Input "
        "should be a valid date"
    )
    nested = _process(params=Source)
    with pytest.raises(
        BadRequest, match=r"^body.windows.1.dys: unknown field \(did you mean .days.\?\)"
    ):
        nested.parameters({"windows": [{"start": "2024-01-01"}, {"start": "2024-01-01", "dys": 2}]})
    with pytest.raises(BadRequest, match=r"^body.named.EU.extra: unknown field; "):
        nested.parameters({"named": {"EU": {"start": "2024-01-01", "extra": 1}}})
    recorded = nested.parameters({"windows": [{"start": "2024-01-01", "days": 2}]})
    assert recorded == {"windows": [{"start": "2024-01-01", "days": 2}], "named": {}}
    assert nested.parameters_model.schema()["$defs"]["Window"]["additionalProperties"] is False

    class Loose(BaseModel):
        model_config = ConfigDict(extra="allow")
        window: Window | None = None

    class Outer(BaseModel):
        loose: Loose = Loose()

    outer = _process(params=Outer)
    assert outer.parameters({"loose": {"other": 1}}) == {"loose": {"window": None, "other": 1}}
    with pytest.raises(BadRequest, match=r"^body.loose.window.dayz: unknown field"):
        outer.parameters({"loose": {"window": {"start": "2024-01-01", "dayz": 1}}})
    described = outer.parameters_model.schema()["$defs"]
    assert described["Loose"]["additionalProperties"] is True
    assert described["Window"]["additionalProperties"] is False


def test_unknown_names_and_wrong_values_are_told_together() -> None:
    with pytest.raises(BadRequest) as refused:
        _process(params=Prices).parameters({"dat": "2024-01-02", "ratio": "high"})
    assert str(refused.value) == (
        "body.dat: unknown parameter (did you mean 'date'?); body.date: required; "
        "body.ratio: Input should be a valid number, unable to parse string as a number "
        "(got 'high'); PRICES takes api_key, date, from, ratio, window"
    )


def test_a_model_that_allows_extra_names_takes_them() -> None:
    class Open(BaseModel):
        model_config = ConfigDict(extra="allow")
        known: int = 0

    recorded = _process(params=Open).parameters({"known": "1", "other": [1]})
    assert recorded == {"known": 1, "other": [1]}


def test_plain_defaults_take_any_value_but_no_other_name() -> None:
    process = _process(defaults={"my-key": 1, "_private": None, "class": "a", "model_dump": 2})
    recorded = process.parameters({"my-key": [1, 2], "class": {"b": 1}})
    assert recorded == {"my-key": [1, 2], "_private": None, "class": {"b": 1}, "model_dump": 2}
    assert process.arguments(recorded) == recorded  # a dict, as before
    with pytest.raises(BadRequest, match=r"^body.my_key: unknown parameter \(did you mean"):
        process.parameters({"my_key": 1})


def test_too_many_problems_are_counted_not_listed() -> None:
    process = _process(defaults={})
    with pytest.raises(BadRequest) as refused:
        process.parameters({f"k{n}": n for n in range(40)})
    message = str(refused.value)
    assert message.count("unknown parameter") == MAX_ERRORS_SHOWN
    assert f"and {40 - MAX_ERRORS_SHOWN} more; PRICES takes no parameters" in message


def test_a_long_unknown_name_is_echoed_in_part() -> None:
    with pytest.raises(BadRequest) as refused:
        _process(defaults={}).parameters({"x" * 10_000: 1})
    assert len(str(refused.value)) < 200


def test_secrets_are_masked_where_shown_and_never_echoed() -> None:
    class Keyed(BaseModel):
        api_key: SecretStr = Field(min_length=12)
        user: str = "bob"

    process = _process(params=Keyed)
    with pytest.raises(BadRequest) as refused:
        process.parameters({"api_key": "short-one", "user": 5})
    assert "short-one" not in str(refused.value)
    assert "body.api_key: Value should have at least 12 " in str(refused.value)
    recorded = process.parameters({"api_key": "s3cr3t-value-1"})
    assert recorded == {"api_key": "s3cr3t-value-1", "user": "bob"}
    shown = process.parameters_model.shown(recorded)
    assert shown == {"api_key": "**********", "user": "bob"}
    assert "s3cr3t" not in repr(process.arguments(recorded))  # a phase logging its params


def test_a_secret_inside_a_nested_model_or_list_is_never_echoed() -> None:
    class Credentials(BaseModel):
        user: str = "bob"
        password: SecretStr = SecretStr("default-password")

    class Source(BaseModel):
        credentials: Credentials = Credentials()
        keys: list[Credentials] = []
        days: int = 1

    process = _process(params=Source)
    for body in (
        {"credentials": {"password": 31415926535}},
        {"keys": [{"password": 31415926535}]},
        {"credentials": {"password": 31415926535}, "dayz": 2},
    ):
        with pytest.raises(BadRequest) as refused:
            process.parameters(body)
        assert "31415926535" not in str(refused.value)
        assert "password: Input should be a valid string" in str(refused.value)
    with pytest.raises(BadRequest, match=r"body.days: .* \(got 'many'\)"):
        process.parameters({"days": "many"})  # a field holding no secret is still echoed


def test_a_secret_default_is_masked_in_the_catalogue() -> None:
    process = _process(params=Prices)
    assert process.parameters_model.defaults()["api_key"] == "**********"
    assert "default-secret" not in str(process.parameters_model.schema())
    assert process.parameters_model.schema()["additionalProperties"] is False


def test_the_service_s_keys_are_kept_apart() -> None:
    process = _process(params=Window)
    with pytest.raises(BadRequest, match=r"^body.subscription: reserved; the service sets it"):
        process.parameters({"start": "2024-01-01", "subscription": {}})
    upstream = {"_id": "u1", "name": "UP", "status": "success"}
    recorded = process.parameters({"start": "2024-01-01"}, added={"upstream": upstream})
    assert recorded["upstream"] == upstream
    assert process.arguments(recorded) == Window(start=dt.date(2024, 1, 1))  # not in the model
    with pytest.raises(ValueError, match="not one of the service's keys"):
        process.parameters({"start": "2024-01-01"}, added={"other": 1})


def test_a_process_may_not_declare_the_service_s_keys() -> None:
    class Claims(BaseModel):
        upstream: str = ""

    with pytest.raises(ValueError, match="parameter 'upstream' is reserved for the service"):
        _process(params=Claims)
    with pytest.raises(ValueError, match="parameter 'subscription' is reserved"):
        _process(defaults={"subscription": None})


def test_a_definition_whose_defaults_are_refused_fails_at_once() -> None:
    class Wrong(BaseModel):
        days: int = "many"  # type: ignore[assignment]

    with pytest.raises(ValueError, match=r"process PRICES: its defaults are refused: .*days"):
        _process(params=Wrong)

    def positive(params: Any) -> None:
        if params["days"] < 1:
            raise ValueError("days: must be 1 or more")

    with pytest.raises(ValueError, match="its defaults are refused: days: must be 1 or more"):
        _process(defaults={"days": 0}, check=positive)
    with pytest.raises(ValueError, match="give params= or defaults=, not both"):
        _process(params=Window, defaults={"start": "2024-01-01"})
    with pytest.raises(ValueError, match="params must be a pydantic model class"):
        _process(params=dict)


def test_runs_the_service_makes_need_every_parameter_to_have_a_default() -> None:
    for made in (
        {"schedule": "0 1 * * *"},
        {"subscriptions": ("#X.*",)},
        {"follows": {"A": "failed"}},
    ):
        with pytest.raises(ValueError, match="parameter 'date' has no default, but the runs"):
            _process(params=Prices, **made)


def test_a_process_with_a_required_parameter_cannot_be_given_a_schedule(
    sqlite_store: ExecutionStore,
) -> None:
    registry = ProcessRegistry([_process(params=Prices)])
    with pytest.raises(BadRequest, match="parameter 'date' has no default"):
        change_process(sqlite_store, registry, "PRICES", schedule="0 1 * * *", who="tester")
    assert sqlite_store.process_states().get("PRICES") is None  # nothing stored


def test_an_instance_of_the_model_is_revealed_as_the_body_it_stands_for() -> None:
    """`revealed`: an instance's JSON form, by alias, secrets in clear (what `testing.run`
    gives as a body); the phases get the secret in clear again."""
    process = _process(params=Prices)
    given = Prices.model_validate(
        {"date": "2024-05-02", "from": "boe", "api_key": "s3cr3t-value-2"}
    )
    body = revealed(given)
    assert body == {
        "date": "2024-05-02",
        "window": None,
        "from": "boe",
        "api_key": "s3cr3t-value-2",
        "ratio": 1.0,
    }
    recorded = process.parameters(body)
    assert recorded == body
    assert process.arguments(recorded).api_key.get_secret_value() == "s3cr3t-value-2"
