"""What the task's shown arguments hold of a run's parameters (`engine.shown_parameters`):
secrets masked, nested values elided, bounded; taken once by the dispatch."""

from __future__ import annotations

from procexec.engine import shown_parameters
from procexec.engine.shown_parameters import MASK, SHOWN_CHARS, VALUE_CHARS, brief, remember, take


def test_a_secret_is_masked_and_nested_values_elided() -> None:
    recorded = {"who": "world", "api_key": "s3cr3t", "creds": {"key": "x"}, "days": [1, 2]}
    text = brief(frozenset({"api_key"}), recorded)
    assert text == f"{{'who': 'world', 'api_key': '{MASK}', 'creds': {{…}}, 'days': […]}}"
    assert "s3cr3t" not in text


def test_values_and_the_whole_are_bounded() -> None:
    text = brief(frozenset(), {"long": "x" * 1000})
    assert text == "{'long': " + ("'" + "x" * (VALUE_CHARS - 2)) + "…}"
    many = brief(frozenset(), {f"p{i}": i for i in range(500)})
    assert len(many) == SHOWN_CHARS and many.endswith("…}")


def test_a_run_is_taken_once() -> None:
    remember("run-1", frozenset(), {"a": 1})
    assert take("run-1") == "{'a': 1}"
    assert take("run-1") is None


def test_the_waiting_runs_are_bounded() -> None:
    for i in range(shown_parameters.MAX_WAITING + 10):
        remember(f"bounded-{i}", frozenset(), {})
    assert len(shown_parameters._waiting) <= shown_parameters.MAX_WAITING
    shown_parameters._waiting.clear()
