"""Stamps the build information into the wheel when it is built (setuptools' `build_py`,
named in pyproject.toml): the commit it was built from and when. An installed procexec reads
it (`procexec.buildinfo`); only a source checkout asks git.

Where git knows no commit (the image's build: its context has no `.git`), the commit is read
from the build's environment, `GIT_COMMIT` (the Dockerfile's build argument), else `unknown`."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from setuptools.command.build_py import build_py

#: the stamp's name inside the package; `procexec.buildinfo.STAMP` reads it (this module
#: imports nothing of procexec: the build loads it before procexec can be imported)
STAMP = "_build.json"
#: the variable of the build's environment that names the commit when git cannot (not a
#: `PROCEXEC_*` setting: only the build reads it, and the image keeps it nowhere)
COMMIT_VARIABLE = "GIT_COMMIT"


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def commit() -> str:
    """The commit being built: git's, else the build environment's, else `unknown`."""
    given = os.environ.get(COMMIT_VARIABLE, "").strip()
    return _git("rev-parse", "HEAD") or given or "unknown"


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        built = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        stamp = {"commit": commit(), "buildTime": built}
        target = Path(self.build_lib) / "procexec" / STAMP
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(stamp) + "\n")
