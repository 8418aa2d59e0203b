"""Stamps the build information into the wheel when it is built (setuptools' `build_py`,
named in pyproject.toml): the commit it was built from and when. An installed procexec reads
it (`procexec.buildinfo`); only a source checkout asks git."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from setuptools.command.build_py import build_py

#: the stamp's name inside the package; `procexec.buildinfo.STAMP` reads it (this module
#: imports nothing of procexec: the build loads it before procexec can be imported)
STAMP = "_build.json"


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        built = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        stamp = {"commit": _git("rev-parse", "HEAD") or "unknown", "buildTime": built}
        target = Path(self.build_lib) / "procexec" / STAMP
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(stamp) + "\n")
