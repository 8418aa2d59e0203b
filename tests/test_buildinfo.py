"""The build information: stamped into the wheel, asked of git only in a source checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
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


def _source_copy(target: Path) -> Path:
    """The files of this tree that git would commit, without `.git`: an image's build context."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    assert not (target / ".git").exists()
    return target


def test_a_build_without_git_stamps_the_commit_it_is_given(tmp_path: Path) -> None:
    """The image's build has no `.git`: the commit comes from the build argument, which the
    Dockerfile hands to the wheel's build as `GIT_COMMIT`."""
    source = _source_copy(tmp_path / "context")
    given = "0123456789abcdef0123456789abcdef01234567"
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("GIT_")},
        # git finds no repository above the copy either
        "GIT_CEILING_DIRECTORIES": str(tmp_path),
        _stamp.COMMIT_VARIABLE: given,
    }
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp_path / "dist", source],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    (wheel,) = (tmp_path / "dist").glob("procexec-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        stamp = json.loads(archive.read(f"procexec/{_stamp.STAMP}"))
    assert stamp["commit"] == given
