"""The client's display of a followed run (`procexec.client_view.Follow`): plain lines when
not on a terminal, a display redrawn in place on one, JSON lines with `--json`; and how the
client reads its URL and token (`procexec.client.settings`)."""

from __future__ import annotations

import io
import json

import pytest

from procexec.client import BASE_PATH, ClientError, Event, settings
from procexec.client_view import Follow

EVENTS = [
    Event("1", "status", {"status": "running", "message": "Running"}),
    Event("2.1", "phase", {"index": 0, "name": "EXTRACT", "status": "running", "message": "go"}),
    Event("2", "log", {"phase": 0, "lines": ["2021-07-01T10:00:00.000000000Z[UTC] info a line"]}),
    Event("3.1", "phase", {"index": 0, "status": "success", "message": "Completed EXTRACT"}),
    Event("3", "end", {"status": "success", "message": "Completed Successfully"}),
]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_off_a_terminal() -> None:
    out = io.StringIO()
    view = Follow("r1", out)
    for event in EVENTS:
        view.show(event)
    assert out.getvalue().splitlines() == [
        "r1: running (Running)",
        "phase EXTRACT: running (go)",
        "EXTRACT  2021-07-01T10:00:00.000000000Z[UTC] info a line",
        "phase EXTRACT: success (Completed EXTRACT)",
        "r1: success (Completed Successfully)",
    ]


def test_a_display_redrawn_in_place_on_a_terminal() -> None:
    out = Terminal()
    view = Follow("r1", out)
    for event in EVENTS[:3]:
        view.show(event)
    text = out.getvalue()
    assert "\x1b[2F" in text  # back up over the two lines drawn before
    assert text.rstrip().endswith("EXTRACT        running    info a line")
    for event in EVENTS[3:]:
        view.show(event)
    last = out.getvalue().rsplit("\x1b[2F", 1)[1]
    assert "r1  success  Completed Successfully" in last and "✓ EXTRACT" in last


def test_json_lines() -> None:
    out = Terminal()
    view = Follow("r1", out, as_json=True)
    for event in EVENTS:
        view.show(event)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["id"] for line in lines] == ["1", "2.1", "2", "3.1", "3"]


def test_settings_from_options_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROCEXEC_URL", raising=False)
    monkeypatch.delenv("PROCEXEC_TOKEN", raising=False)
    with pytest.raises(ClientError, match="PROCEXEC_URL"):
        settings(None, "t")
    with pytest.raises(ClientError, match="PROCEXEC_TOKEN"):
        settings("http://h:1", None)
    with pytest.raises(ClientError, match="not an http"):
        settings("h:1", "t")
    assert settings("http://h:1/", "t") == (f"http://h:1{BASE_PATH}", "t")
    monkeypatch.setenv("PROCEXEC_URL", f"http://h:2{BASE_PATH}")
    monkeypatch.setenv("PROCEXEC_TOKEN", "pe_x")
    assert settings(None, None) == (f"http://h:2{BASE_PATH}", "pe_x")
