"""Every setting is documented with its default, in the settings table of docs/operations.md:
each field of `procexec.engine.settings.Settings` has a row, by its variable, whose default
column reads (as that variable's value) as what the variable unset gives; the table has no row
that is no field; and the package names no `PROCEXEC_*` variable that is no field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from procexec.engine.settings import Settings, SettingsError
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
#: the settings' variables: variable -> field
FIELDS = {Settings.env_name(name): name for name in Settings.model_fields}
#: the variable the documented store URL's default is written with
DATA_DIR = "$PROCEXEC_DATA_DIR"


def default_mismatch(field: str, column: str) -> str | None:
    """Why `column`, a row's default column, does not show `field`'s default (None: it does).

    The column is empty where the setting is empty unset, and otherwise one value in backticks
    that, given as the variable, gives what the variable unset gives (`$PROCEXEC_DATA_DIR`
    standing for the data folder)."""
    variable = Settings.env_name(field)
    unset = getattr(Settings.from_env({}), field)
    if not column:
        empty = unset is None or unset == "" or unset == ()
        return None if empty else f"{variable}: the default column is empty, the default {unset!r}"
    shown = re.fullmatch(r"`([^`]*)`", column)
    if shown is None:
        return f"{variable}: the default column {column!r} is not one value in backticks"
    text = shown[1].replace(DATA_DIR, str(Settings.from_env({}).data_dir))
    try:
        read = getattr(Settings.from_env({variable: text}), field)
    except SettingsError as exc:
        return f"{variable}: the documented default {column} is no value of it ({exc})"
    if read != unset:
        return f"{variable}: documented default {column} reads as {read!r}, not {unset!r}"
    return None


@pytest.mark.parametrize("variable", sorted(FIELDS))
def test_each_setting_has_a_row_with_its_default(variable: str) -> None:
    assert variable in ROWS, f"{variable} is not in docs/operations.md's settings table"
    assert default_mismatch(FIELDS[variable], ROWS[variable]) is None


def test_the_table_holds_no_setting_that_is_not_read() -> None:
    assert set(ROWS) - set(FIELDS) == set()


def test_the_package_reads_no_variable_that_is_no_setting() -> None:
    named = {
        found
        for path in MODULES.values()
        for found in re.findall(r"\bPROCEXEC_[A-Z_]+\b", path.read_text())
    }
    assert named - set(FIELDS) == set()


@pytest.mark.parametrize(
    ("field", "column"),
    [
        ("lost_run_timeout", "`30`"),  # another number
        ("examples", "`false`"),  # the other answer
        ("data_dir", "`./procexec`"),  # another folder
        ("store_url", "`sqlite:///$PROCEXEC_DATA_DIR/other.db`"),  # another file
        ("store_url", ""),  # a default left out
        ("examples", ""),  # empty is a value of its own here: no examples
        ("loader_queue", ""),  # empty is a value of its own here: no hand-off
        ("broker_url", "embedded"),  # a word, not a value
        ("max_log_lines", "`lots`"),  # no value of the variable at all
    ],
)
def test_a_wrong_default_is_found(field: str, column: str) -> None:
    assert default_mismatch(field, column) is not None


@pytest.mark.parametrize(
    ("field", "column"),
    [
        ("lost_run_timeout", "`60`"),
        ("log_flush_interval", "`0.25`"),
        ("read_timeout", "`10`"),
        ("retention_days", "`0`"),
        ("data_dir", "`./.procexec`"),
        ("store_url", "`sqlite:///$PROCEXEC_DATA_DIR/procexec.db`"),
        ("broker_url", ""),
        ("process_modules", ""),
    ],
)
def test_a_right_default_is_taken(field: str, column: str) -> None:
    assert default_mismatch(field, column) is None
