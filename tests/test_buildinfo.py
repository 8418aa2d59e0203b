"""The build information: stamped into the wheel, asked of git only in a source checkout."""

from __future__ import annotations

import subprocess
from pathlib import Path

from procexec import _stamp, buildinfo

ROOT = Path(__file__).resolve().parents[1]


def test_the_stamp_is_read_under_the_name_it_is_written() -> None:
    assert buildinfo.STAMP == _stamp.STAMP


def test_a_source_checkout_asks_git() -> None:
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert not (buildinfo.PACKAGE / buildinfo.STAMP).exists()  # no stamp in the work tree
    buildinfo.build_stamp.cache_clear()  # asked once a process: an earlier test may have asked
    assert buildinfo.build_stamp()["commit"] == head
