"""docs/api.md lists the execution document's fields as the models of `engine.document` do:
the same fields, in the same order, with the same descriptions."""

from __future__ import annotations

import re
from pathlib import Path

from procexec.engine.document import DataUpdates, Execution, Phase, field_names

PAGE = Path(__file__).resolve().parents[2] / "docs" / "api.md"
#: the header of the page's table of the document's fields
HEADER = "| field | what |"
_ROW = re.compile(r"^\| `([^`]+)` \| (.+) \|$")


def test_the_api_page_lists_the_model_s_fields() -> None:
    lines = PAGE.read_text().splitlines()
    table = lines[lines.index(HEADER) + 2 :]
    table = table[: table.index("")]
    listed = [found.groups() for found in map(_ROW.match, table) if found]
    assert len(listed) == len(table), "a row the test cannot read"
    expected = [
        (prefix + alias, field.description)
        for model, prefix in ((Execution, ""), (Phase, "phases[]."), (DataUpdates, "data."))
        for alias, field in zip(field_names(model), model.model_fields.values(), strict=True)
    ]
    assert listed == expected
