"""The database's owner lock: a second daemon on one database is refused, naming the first."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.errors import StorageInUseError, StorageUnavailableError
from gateway.store.lock import DatabaseLock
from tests.support.filesystems import tmpfs

_HOLD = """
import sys, time
from pathlib import Path
from gateway.store.lock import DatabaseLock
lock = DatabaseLock(Path(sys.argv[1]))
lock.acquire()
print("locked", flush=True)
time.sleep(600)
"""


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path: Path) -> None:
    database = tmp_path / "gateway.db"
    with DatabaseLock(database) as first:
        assert first.path == tmp_path / "gateway.db.lock"
        assert first.path.read_text(encoding="ascii").strip() == str(os.getpid())
        with pytest.raises(StorageInUseError) as caught:
            DatabaseLock(database).acquire()
        assert caught.value.holder_pid == os.getpid()
        message = str(caught.value)
        assert str(database) in message
        assert f"pid {os.getpid()}" in message
        assert "[storage] path" in message
        first.acquire()  # idempotent for its holder
    with DatabaseLock(database):  # released: the next one gets it
        pass
    assert (tmp_path / "gateway.db.lock").exists()  # the file stays; only the lock goes


def test_a_holder_that_died_never_blocks_the_next_start(tmp_path: Path) -> None:
    database = tmp_path / "gateway.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(database)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StorageInUseError) as caught:
            DatabaseLock(database).acquire()
        assert caught.value.holder_pid == holder.pid
    finally:
        holder.send_signal(signal.SIGKILL)  # no clean-up of any kind
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    with DatabaseLock(database) as lock:
        assert lock.path.read_text(encoding="ascii").strip() == str(os.getpid())


def test_a_lock_file_that_cannot_be_created_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageUnavailableError, match="does not exist"):
        DatabaseLock(tmp_path / "missing" / "gateway.db").acquire()
    with (
        tmpfs(tmp_path / "ro", size="64k", read_only=True) as read_only,
        pytest.raises(StorageUnavailableError) as caught,
    ):
        DatabaseLock(read_only / "gateway.db").acquire()
    assert f"{read_only / 'gateway.db.lock'}" in str(caught.value)


def test_a_garbled_lock_file_still_refuses_without_a_pid(tmp_path: Path) -> None:
    database = tmp_path / "gateway.db"
    with DatabaseLock(database) as first:
        first.path.write_text("not a pid", encoding="ascii")
        with pytest.raises(StorageInUseError, match="pid unknown") as caught:
            DatabaseLock(database).acquire()
        assert caught.value.holder_pid is None
