"""A process's typed parameters (engine/params.py): the body validated in pydantic's lax
mode, unknown and reserved names refused, secrets never shown, the definition checked."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, Field, SecretStr

from procexec.engine.errors import BadRequest
from procexec.engine.process import Process

SECRET = "s3cr3t-value"


class Keyed(BaseModel):
    who: str = "world"
    count: int = 1
    api_key: SecretStr = Field(SecretStr("default-k3y"), min_length=8)


def process(model: type[BaseModel] = Keyed, **options: Any) -> Process:
    made = Process("P", params=model, **options)

    @made.phase("EXTRACT")
    def extract(ctx: Any, _: Any) -> None:
        pass

    return made


def test_lax_mode_converts_what_is_exact_and_refuses_the_rest() -> None:
    recorded = process().parameters({"count": "2"})
    assert recorded == {"who": "world", "count": 2, "api_key": "default-k3y"}
    with pytest.raises(BadRequest, match=r"^body\.count: .*fractional part \(got 1\.5\)$"):
        process().parameters({"count": 1.5})


def test_unknown_names_are_refused_even_with_plain_defaults() -> None:
    plain = Process("PLAIN", defaults={"who": "world"})
    with pytest.raises(BadRequest, match=r"^body\.whoo: unknown parameter \(did you mean 'who'"):
        plain.parameters({"whoo": "x"})
    assert plain.arguments(plain.parameters({"who": "x"})) == {"who": "x"}


@pytest.mark.parametrize("key", ["subscription", "upstream"])
def test_the_service_keys_are_neither_given_nor_declared(key: str) -> None:
    with pytest.raises(BadRequest, match=rf"^body\.{key}: reserved"):
        process().parameters({key: {}})
    with pytest.raises(ValueError, match=f"parameter '{key}' is reserved for the service"):
        Process("R", defaults={key: None})
    recorded = process().parameters({}, added={key: {"a": 1}})
    assert recorded[key] == {"a": 1}
    assert process().arguments(recorded).model_dump().keys() == {"who", "count", "api_key"}


def test_a_secret_is_in_clear_for_the_worker_and_masked_wherever_shown() -> None:
    made = process()
    recorded = made.parameters({"api_key": SECRET})
    assert recorded["api_key"] == SECRET  # the recorded input, for the worker alone
    assert made.arguments(recorded).api_key.get_secret_value() == SECRET
    assert SECRET not in repr(made.arguments(recorded))
    assert SECRET not in str(made.arguments(recorded))
    shown = made.parameters_model.shown(recorded)
    assert shown["api_key"] == "**********" and SECRET not in json.dumps(shown)
    defaults = made.parameters_model.defaults()
    assert defaults == {"who": "world", "count": 1, "api_key": "**********"}
    assert "default-k3y" not in json.dumps(made.parameters_model.schema())


def test_a_refused_secret_is_not_echoed() -> None:
    with pytest.raises(BadRequest) as refused:
        process().parameters({"api_key": "short"})
    assert str(refused.value).startswith("body.api_key: Value should have at least 8 items")
    assert "short" not in str(refused.value) and "(got" not in str(refused.value)


class Needs(BaseModel):
    api_key: SecretStr
    count: int = 1


def test_a_required_parameter_is_allowed_on_a_process_only_triggered_by_callers() -> None:
    made = process(Needs)
    assert made.parameters_model.required() == ["api_key"]
    assert made.parameters_model.defaults() == {"count": 1}
    with pytest.raises(BadRequest, match=r"^body\.api_key: required$"):
        made.parameters({})
    assert made.parameters({"api_key": "k"}) == {"api_key": "k", "count": 1}


@pytest.mark.parametrize(
    "options",
    [{"schedule": "0 6 * * *"}, {"subscriptions": ("#X.*",)}, {"follows": {"UP": "success"}}],
)
def test_a_required_parameter_and_runs_the_service_makes_do_not_go_together(
    options: dict[str, Any],
) -> None:
    with pytest.raises(ValueError, match=r"^process P: parameter 'api_key' has no default"):
        process(Needs, **options)


class BadDefault(BaseModel):
    api_key: SecretStr
    count: int = "many"  # type: ignore[assignment]


class BadSecretDefault(BaseModel):
    api_key: SecretStr = Field(SecretStr("tiny"), min_length=8)


def test_a_default_its_model_refuses_fails_the_definition_naming_it() -> None:
    with pytest.raises(ValueError) as refused:
        process(BadDefault)  # a required parameter beside it is no excuse
    assert str(refused.value) == (
        "process P: its defaults are refused: defaults.count: Input should be a valid integer, "
        "unable to parse string as an integer (got 'many')"
    )
    with pytest.raises(ValueError, match=r"defaults\.api_key: Value should have at least 8") as bad:
        process(BadSecretDefault)
    assert "tiny" not in str(bad.value)
