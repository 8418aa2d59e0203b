"""What build of procexec this is: the commit and build time stamped into the wheel, or, in a
source checkout, asked of git. Nothing else runs git: an installed procexec never does."""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
#: the stamp's name inside the package, written by `procexec._stamp` when the wheel is built
#: (the same name there: that module needs setuptools, which an installed procexec may lack)
STAMP = "_build.json"


@functools.cache
def build_stamp() -> dict[str, str | None]:
    """`{"commit": ..., "buildTime": ...}`; None where neither the stamp nor git knows."""
    stamp = PACKAGE / STAMP
    if stamp.is_file():
        found: dict[str, str | None] = json.loads(stamp.read_text())
        return found
    checkout = PACKAGE.parents[1]  # src/procexec/ in a checkout: the root holds `.git`
    if (checkout / ".git").exists():  # a folder, or a file in a git worktree
        return {
            "commit": _git(checkout, "rev-parse", "HEAD"),
            "buildTime": _git(checkout, "log", "-1", "--format=%cI"),
        }
    return {"commit": None, "buildTime": None}


def _git(checkout: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=checkout, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None
