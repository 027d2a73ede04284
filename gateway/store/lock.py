"""The database's owner lock: one daemon per database, held for the daemon's lifetime.

``<database>.lock``, next to the database, is locked with ``flock`` (exclusive, non-blocking)
and holds its owner's pid, which a second daemon names in its refusal. The kernel drops the
lock when its process ends, however it ends, so a file left behind never blocks a start. The
file is never deleted: a process could otherwise lock a file another one is about to unlink,
and two daemons would each hold a lock on a different file of the same name.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType

from gateway.errors import StorageInUseError, StorageUnavailableError

__all__ = ["DatabaseLock"]

_LOCK_FILE_MODE = 0o640


class DatabaseLock:
    """``with DatabaseLock(path):`` — StorageInUseError when another process holds it."""

    def __init__(self, database_path: Path) -> None:
        self.database_path = Path(database_path)
        self.path = self.database_path.with_name(self.database_path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise: StorageInUseError naming the holder's pid, or
        StorageUnavailableError when the lock file cannot be created."""
        if self._fd is not None:
            return
        if not self.database_path.parent.is_dir():
            raise StorageUnavailableError(
                self.database_path, f"directory {self.database_path.parent} does not exist"
            )
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _LOCK_FILE_MODE)
        except OSError as exc:
            raise StorageUnavailableError(
                self.database_path, f"cannot create the lock file {self.path}: {exc.strerror}"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise StorageInUseError(self.database_path, holder, self.path) from None
        except OSError as exc:
            os.close(fd)
            raise StorageUnavailableError(
                self.database_path, f"cannot lock {self.path}: {exc.strerror}"
            ) from exc
        with contextlib.suppress(OSError):  # the pid is for the message only
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (closing the file releases it). Idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> DatabaseLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
