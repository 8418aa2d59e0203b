"""Every setting is documented with its default, in the settings table of docs/operations.md:
each field of `procexec.engine.settings.Settings` has a row, by its variable, whose default
column reads (as that variable's value) as what the variable unset gives; the table has no row
that is no field; and the package names no `PROCEXEC_*` variable that is no field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from procexec.engine.settings import OTHER_VARIABLES, Settings, SettingsError
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
    # the other names procexec knows are listed where it says which names it knows
    others = {name.removesuffix("*") for name in OTHER_VARIABLES}
    assert named - set(FIELDS) - others == set()


#: a `PROCEXEC_*` name, unless it is shown refused
UNKNOWN_OR_NOT = r"(?<!unknown setting )\bPROCEXEC_[A-Z0-9_]*[A-Z0-9]\b"
#: the files that name unknown variables on purpose (to see them refused)
ON_PURPOSE = {
    "tests/engine/test_settings.py",
    "tests/integration/test_one_line_errors.py",
    "tests/test_settings_documented.py",
}


def test_every_procexec_variable_of_the_project_is_known() -> None:
    """What the tests, the benches, the build files, CI and the docs set or read is a setting
    or one of the names the settings know: none is refused as unknown."""
    files = [
        path
        for path in ROOT.rglob("*")
        if path.is_file()
        and not {".venv", ".git", ".procexec", "node_modules"} & set(path.parts)
        and str(path.relative_to(ROOT)) not in ON_PURPOSE
        and (
            path.suffix in {".py", ".md", ".yml", ".yaml", ".toml", ".sh", ".cfg", ".txt"}
            or path.name in {"Makefile", "Dockerfile"}
            or path.parent.name == ".ci"
        )
    ]
    named = {
        found
        for path in files
        # (but for the example of a refusal: `unknown setting PROCEXEC_BROKER`)
        for found in re.findall(UNKNOWN_OR_NOT, " ".join(path.read_text(errors="ignore").split()))
    }
    # each kind of name is found: a setting, a client's, the image's, the test suite's
    assert {"PROCEXEC_LOADER_QUEUE", "PROCEXEC_URL", "PROCEXEC_UID"} <= named
    assert {"PROCEXEC_TEST_MONGODB_URI", "PROCEXEC_REQUIRE_REDIS"} <= named
    assert {name for name in named if not Settings.known(name)} == set()


@pytest.mark.parametrize(
    ("field", "column"),
    [
        ("lost_run_timeout", "`30`"),  # another number
        ("examples", "`false`"),  # the other answer
        ("data_dir", "`./procexec`"),  # another folder
        ("store_url", "`sqlite:///$PROCEXEC_DATA_DIR/other.db`"),  # another file
        ("store_url", ""),  # a default left out
        ("examples", ""),  # a default left out (empty is the default, `true`)
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
        ("log_flush_interval", "`0.05`"),
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
