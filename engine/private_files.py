"""The data folder and the files procexec keeps are its user's alone: folders 0700, files 0600.

Every command sets the umask `PRIVATE_UMASK` when it starts, so that what it makes is private;
what an earlier version (or another umask) left readable by others is made private when the
data folder, the store and the embedded broker's folders are opened (group and other bits
removed). A file or folder procexec cannot change (not its user's) is logged, and left as it is.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path

logger = logging.getLogger(__name__)

#: what every command's files are made with: readable and writable by their user alone
PRIVATE_UMASK = 0o077
#: the files SQLite keeps beside a store's file
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def private_umask() -> None:
    """Make every file and folder this process (and its children) creates private."""
    os.umask(PRIVATE_UMASK)


def private(path: Path) -> None:
    """Take group and other permissions off `path` (a symbolic link is left alone)."""
    try:
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode) or not mode & 0o077:
            return
        os.chmod(path, stat.S_IMODE(mode) & ~0o077)
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning("cannot make %s readable by its user alone: %s", path, exc)


def private_folder(folder: Path, *, files: bool = False, tree: bool = False) -> Path:
    """Make `folder` (0700 when it is made) and take group and other permissions off it; with
    `files`, off the files directly in it too; with `tree`, off everything under it."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    private(folder)
    if tree:
        for root, folders, names in os.walk(folder):
            for name in (*folders, *names):
                private(Path(root) / name)
    elif files:
        for entry in _entries(folder):
            if entry.is_file(follow_symlinks=False):
                private(Path(entry.path))
    return folder


def private_store_file(path: Path) -> None:
    """Make a SQLite store's file 0600 before SQLite makes it (SQLite gives its `-wal` and
    `-shm` files the database file's permissions), and take group and other permissions off
    the file and its companions where they exist."""
    with contextlib.suppress(OSError):  # SQLite says what is wrong when it opens the file
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    for file in (path, *(Path(f"{path}{suffix}") for suffix in SQLITE_COMPANIONS)):
        private(file)


def _entries(folder: Path) -> Iterable[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except OSError:
        return []
