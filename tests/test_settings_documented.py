"""Every setting is documented with its default, in the settings table of docs/operations.md:
the variables that procexec.engine.settings reads, and any other `PROCEXEC_*` name the package
reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from procexec.engine import settings
from tests.test_layout import MODULES

ROOT = Path(__file__).resolve().parents[1]
#: the table's rows: variable -> default column
ROWS = dict(
    re.findall(
        r"^\| `(PROCEXEC_[A-Z_]+)` \|\s*([^|]*?)\s*\|",
        (ROOT / "docs/operations.md").read_text(),
        re.M,
    )
)
VARIABLES = {name: value for name, value in vars(settings).items() if name.startswith("ENV_")}


@pytest.mark.parametrize("name", sorted(VARIABLES))
def test_each_setting_has_a_row_with_its_default(name: str) -> None:
    variable = VARIABLES[name]
    assert variable in ROWS, f"{variable} is not in docs/operations.md's settings table"
    default = getattr(settings, name.replace("ENV_", "DEFAULT_", 1), None)
    if default is not None:
        shown = f"{default:g}" if isinstance(default, float | int) else str(default)
        assert shown in ROWS[variable], f"{variable}: default {shown} not in {ROWS[variable]!r}"


def test_no_setting_is_read_outside_the_table() -> None:
    read = {
        found
        for path in MODULES.values()
        for found in re.findall(r"\bPROCEXEC_[A-Z_]+\b", path.read_text())
    }
    assert read - set(ROWS) == set()


def test_the_table_holds_no_setting_that_is_not_read() -> None:
    assert set(ROWS) - set(VARIABLES.values()) == set()
