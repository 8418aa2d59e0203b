"""After a real `procexec standalone` start and runs, the data folder and everything in it
are its user's alone: folders 0700 (no group or other bits), files 0600 — the store and its
`-wal`/`-shm`, the embedded broker's folders and messages, the beat's schedule, DEMO's guard
folders — even where an earlier start under a looser umask left them readable."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from tests.integration.harness import (
    api_client,
    service_env,
    start_standalone,
    trigger,
    wait_terminal,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc"),
]


def loose(data_dir: Path) -> list[str]:
    """Everything under `data_dir` (itself included) that its group or others may use."""
    found = []
    for path in [data_dir, *data_dir.rglob("*")]:
        mode = path.lstat().st_mode
        if not stat.S_ISLNK(mode) and mode & 0o077:
            found.append(f"{path.relative_to(data_dir)} {stat.filemode(mode)}")
    return found


def test_the_data_folder_is_private_after_a_real_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    previous = os.umask(0o022)  # as an earlier version left it: readable by everyone
    try:
        data_dir.mkdir(mode=0o755)
        sqlite3.connect(data_dir / "procexec.db").close()  # 0644
        (data_dir / "broker" / "queue").mkdir(parents=True, mode=0o755)
        (data_dir / "broker" / "queue" / "old.msg").write_text("{}")  # 0644
        assert len(loose(data_dir)) == 5, loose(data_dir)
    finally:
        os.umask(previous)

    env = service_env(data_dir)  # the embedded store and broker; the children get umask 022
    standalone, url, token = start_standalone(env, tmp_path)
    try:
        with api_client(url, token) as client:
            runs = [
                trigger(client, "ECB_FX"),
                trigger(client, "DEMO", {"guard": "check", "log_lines": 1}),
            ]
            for execution_id in runs:
                assert wait_terminal(client, execution_id)["status"] == "success"
        names = {path.name for path in data_dir.rglob("*")}
        assert {"procexec.db", "procexec.db-wal", "procexec.db-shm", "queue", "check"} <= names
        assert loose(data_dir) == []
    finally:
        standalone.stop()
    assert loose(data_dir) == []
