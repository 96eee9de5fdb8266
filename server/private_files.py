"""Files only the service's user may read: the embedded database (with its WAL and shared-memory
files) and the generated secrets, in a data directory of its own.

A directory created here is 0700 and a file 0600 (whatever the umask allows of that). Files that
already exist with wider modes are narrowed: they are the service's own. A directory that already
exists is left as it is (it may be a home or a shared directory given as `--data-dir`), with a
warning when other users can list or enter it: the files inside stay unreadable to them all the same.
"""

from __future__ import annotations

import errno
import logging
import os
import pathlib
import stat

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600
# SQLite's companions of a database file in WAL mode: created with the database file's own mode.
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def private_dir(path: pathlib.Path) -> None:
    """Create `path` (and missing parents) mode 0700; warn if an existing one is open to others."""
    if not path.exists():
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        return
    if not path.is_dir():  # a file given as --data-dir: the caller says so, no warning about its mode
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning(
            "the data directory %s is open to other users (mode %04o): chmod 700 it; its files are 0600",
            path,
            mode,
        )


def private_file(path: pathlib.Path) -> None:
    """Make sure `path` exists (created empty) with mode 0600, narrowing a wider existing mode."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
            os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def narrow(path: pathlib.Path) -> None:
    """An existing file of the service's, left wider than 0600 (by an older version): narrowed."""
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        path.chmod(FILE_MODE)


def private_sqlite_database(path: pathlib.Path) -> None:
    """The database file 0600 before SQLite opens it (SQLite creates its WAL and shared-memory files
    with the database file's mode), in a private directory; companions left wider by an older
    version are narrowed too."""
    private_dir(path.parent)
    private_file(path)
    for suffix in SQLITE_COMPANIONS:
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            narrow(companion)
