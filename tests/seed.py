"""The seed page's example execution, from its one copy, `tests/data/seed_execution.json`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SEED_FILE = Path(__file__).parent / "data" / "seed_execution.json"


def seed_example() -> dict[str, Any]:
    """The example document of the seed page, verbatim (fields in its order)."""
    doc: dict[str, Any] = json.loads(SEED_FILE.read_text())
    return doc
