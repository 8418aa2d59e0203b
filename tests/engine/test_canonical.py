"""Documents come out of every store with their fields in the seed page's order."""

from __future__ import annotations

from procexec.engine.store.base import DOCUMENT_FIELDS, PHASE_FIELDS, canonical


def test_fields_return_to_the_seed_order() -> None:
    # As MongoDB 5+ stores fields that `$set` adds: alphabetically, after the inserted ones.
    stored = {
        "_id": "x",
        "name": "ECB_FX",
        "service": "ETL",
        "phases": [{"end": "e", "log": [], "message": "m", "name": "LOAD", "start": "s",
                    "status": "success"}],
        "status": "success",
        "data": {"curves": {}, "series": {}},
        "end": "2021-07-01T16:30:24.445Z",
        "loaderMessage": "Updated",
        "extra": 1,
    }  # fmt: skip
    result = canonical(stored)
    assert list(result) == [
        *(key for key in DOCUMENT_FIELDS if key in stored),
        "extra",
    ]
    assert list(result)[-4:] == ["end", "loaderMessage", "data", "extra"]
    assert list(result["phases"][0]) == list(PHASE_FIELDS)
    assert result == stored
