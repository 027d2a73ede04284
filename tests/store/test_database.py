"""The SQLite database: pragmas, identity, group commit, and every way a disk can fail."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.clock import FakeClock
from gateway.errors import (
    SchemaTooNewError,
    StorageCorruptError,
    StorageFullError,
    StorageUnavailableError,
)
from gateway.store import SCHEMA_VERSION, Database
from tests.store.support import SMALL_PAGE_BUDGET, schema_pages
from tests.support.filesystems import remount_read_only, tmpfs
from tests.waiting import until


async def test_new_database_is_durable_wal_with_incremental_vacuum(tmp_path: Path) -> None:
    async with Database.running(tmp_path / "g.db", clock=FakeClock()) as db:
        writer = db._writer
        for pragma, expected in (
            ("journal_mode", "wal"),
            ("synchronous", 2),  # FULL
            ("auto_vacuum", 2),  # INCREMENTAL
            ("foreign_keys", 1),
            ("user_version", SCHEMA_VERSION),
        ):
            cursor = await writer.execute(f"PRAGMA {pragma}")
            row = await cursor.fetchone()
            assert row is not None
            assert row[0] == expected, pragma


async def test_epoch_is_kept_and_boot_counts_opens(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    async with Database.running(path, clock=FakeClock()) as first:
        epoch = first.epoch
        assert first.boot == 1
    async with Database.running(path, clock=FakeClock()) as second:
        assert second.epoch == epoch
        assert second.boot == 2
    assert len(epoch) == 16
    int(epoch, 16)


async def test_rebuilt_database_gets_a_new_epoch(tmp_path: Path) -> None:
    async with Database.running(tmp_path / "a.db", clock=FakeClock()) as a:
        pass
    async with Database.running(tmp_path / "b.db", clock=FakeClock()) as b:
        pass
    assert a.epoch != b.epoch


async def test_concurrent_writes_are_group_committed_and_durable(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    async with Database.running(path, clock=FakeClock(), commit_max_rows=500) as db:
        await db.write("CREATE TABLE events (n INTEGER)")
        await asyncio.gather(
            *(db.write("INSERT INTO events VALUES (?)", (n,)) for n in range(2000))
        )
        stats = await db.stats()
        # Every caller was told "durable" only after a commit, and commits were shared.
        assert stats.rows_committed == 2001
        assert stats.commits <= 10
        assert stats.pending_writes == 0
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT count(*), sum(n) FROM events").fetchone() == (
            2000,
            sum(range(2000)),
        )


async def test_write_many_and_read_your_write(tmp_path: Path) -> None:
    async with Database.running(tmp_path / "g.db", clock=FakeClock()) as db:
        await db.write("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
        await db.write_many("INSERT INTO t VALUES (?, ?)", [("a", 1), ("b", 2)])
        row = await db.fetchone("SELECT v FROM t WHERE k = ?", ("b",))
        assert row is not None
        assert row["v"] == 2
        assert await db.fetchone("SELECT v FROM t WHERE k = 'zz'") is None


async def test_a_failing_statement_fails_only_its_batch(tmp_path: Path) -> None:
    async with Database.running(tmp_path / "g.db", clock=FakeClock()) as db:
        await db.write("CREATE TABLE t (k TEXT PRIMARY KEY)")
        await db.write("INSERT INTO t VALUES ('a')")
        with pytest.raises(StorageUnavailableError, match="UNIQUE"):
            await db.write("INSERT INTO t VALUES ('a')")
        await db.write("INSERT INTO t VALUES ('b')")
        rows = await db.fetchall("SELECT k FROM t ORDER BY k")
        assert [row["k"] for row in rows] == ["a", "b"]


async def test_close_flushes_pending_writes_and_refuses_new_ones(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    db = await Database.open(path, clock=FakeClock())
    async with asyncio.TaskGroup() as group:
        group.create_task(db.run(), name="storage.writer")
        await db.write("CREATE TABLE t (n INTEGER)")
        pending = [db.submit("INSERT INTO t VALUES (?)", (n,)) for n in range(100)]
        await db.close()
    assert all(future.done() and future.exception() is None for future in pending)
    with pytest.raises(StorageUnavailableError, match="closed"):
        await db.write("INSERT INTO t VALUES (1)")
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT count(*) FROM t").fetchone() == (100,)


async def test_newer_schema_is_refused_with_both_versions(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    with sqlite3.connect(path) as setup:
        setup.execute("PRAGMA user_version = 99")
    with pytest.raises(SchemaTooNewError) as caught:
        await Database.open(path, clock=FakeClock())
    assert caught.value.found == 99
    assert caught.value.supported == SCHEMA_VERSION
    assert "99" in str(caught.value)
    assert str(path) in str(caught.value)


async def test_garbage_file_is_corrupt_and_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    garbage = b"this is not a database at all" * 200
    path.write_bytes(garbage)
    with pytest.raises(StorageCorruptError) as caught:
        await Database.open(path, clock=FakeClock())
    assert str(path) in str(caught.value)
    assert path.read_bytes() == garbage


async def test_damaged_pages_are_found_by_quick_check(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    with sqlite3.connect(path) as setup:
        setup.execute("PRAGMA journal_mode = DELETE")
        setup.execute("CREATE TABLE t (n INTEGER, pad TEXT)")
        setup.executemany("INSERT INTO t VALUES (?, ?)", [(n, "x" * 200) for n in range(2000)])
        setup.execute("CREATE INDEX t_n ON t(n)")
    data = bytearray(path.read_bytes())
    page = 4096
    for offset in range(3 * page, min(len(data), 40 * page), page):  # scribble over b-tree pages
        data[offset : offset + 64] = b"\xa5" * 64
    path.write_bytes(bytes(data))
    damaged = bytes(data)
    with pytest.raises(StorageCorruptError):
        await Database.open(path, clock=FakeClock())
    assert path.read_bytes() == damaged


async def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "g.db"
    with pytest.raises(StorageUnavailableError) as caught:
        await Database.open(path, clock=FakeClock())
    assert str(path) in str(caught.value)


@pytest.fixture
def read_only_mount(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "ro") as mount_point:
        yield mount_point


async def test_read_only_filesystem_names_the_path(read_only_mount: Path) -> None:
    remount_read_only(read_only_mount)
    path = read_only_mount / "g.db"
    with pytest.raises(StorageUnavailableError) as caught:
        await Database.open(path, clock=FakeClock())
    assert str(path) in str(caught.value)


async def test_existing_database_on_a_filesystem_turned_read_only(read_only_mount: Path) -> None:
    path = read_only_mount / "g.db"
    async with Database.running(path, clock=FakeClock()) as db:
        await db.write("CREATE TABLE t (n INTEGER)")
    remount_read_only(read_only_mount)
    with pytest.raises(StorageUnavailableError) as caught:
        await Database.open(path, clock=FakeClock())
    assert str(path) in str(caught.value)


async def test_full_disk_fails_the_batch_keeps_committed_data_and_keeps_running(
    tmp_path: Path,
) -> None:
    path = tmp_path / "g.db"
    async with Database.running(path, clock=FakeClock(), max_page_count=SMALL_PAGE_BUDGET) as db:
        await db.write("CREATE TABLE t (n INTEGER, pad BLOB)")
        await db.write("INSERT INTO t VALUES (1, zeroblob(100))")
        with pytest.raises(StorageFullError) as caught:
            await db.write_many(
                "INSERT INTO t VALUES (?, zeroblob(4000))", [(n,) for n in range(200)]
            )
        assert str(path) in str(caught.value)
        # Nothing committed before was lost, and the writer still takes small writes.
        await db.write("INSERT INTO t VALUES (2, zeroblob(10))")
        rows = await db.fetchall("SELECT n FROM t ORDER BY n")
        assert [row["n"] for row in rows] == [1, 2]


async def test_real_full_filesystem(tmp_path: Path) -> None:
    # The schema plus 512 KiB (its migrations pass through the WAL, which grows with them).
    size = f"{(schema_pages() * 4 + 512) // 4 * 4}k"
    with tmpfs(tmp_path / "small", size=size) as mount_point:
        path = mount_point / "g.db"
        async with Database.running(path, clock=FakeClock()) as db:
            await db.write("CREATE TABLE t (pad BLOB)")
            with pytest.raises(StorageFullError):
                for _ in range(100):
                    await db.write_many("INSERT INTO t VALUES (zeroblob(8000))", [()] * 10)
            assert (await db.stats()).free_disk_bytes < 64 * 1024


async def test_a_full_disk_is_one_episode_logged_once_even_when_small_writes_pass(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A nearly full disk refuses big writes and lets small ones through: without hysteresis
    every other commit logged an ERROR (and a recovery) — dozens of lines a second."""
    caplog.set_level(logging.INFO, logger="gateway.store.database")
    clock = FakeClock()
    path = tmp_path / "g.db"
    async with Database.running(path, clock=clock, max_page_count=SMALL_PAGE_BUDGET) as db:
        await db.write("CREATE TABLE t (n INTEGER, pad BLOB)")
        changes: list[object] = []
        db.on_full_change = lambda: changes.append(db.full_since)
        assert (await db.stats()).full_since is None
        for n in range(20):
            with pytest.raises(StorageFullError):
                await db.write_many(
                    "INSERT INTO t VALUES (?, zeroblob(4000))", [(n,) for _ in range(200)]
                )
            await db.write("INSERT INTO t VALUES (?, NULL)", (n,))  # small ones still pass
            clock.advance(1)
        stats = await db.stats()
        assert stats.full_since == db.full_since is not None
        assert stats.refused_while_full == 20 * 200
        assert stats.as_dict()["full_since"] is not None
        errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert [r.levelname for r in errors] == ["ERROR"], [r.getMessage() for r in errors]
        assert "storage.full" in errors[0].getMessage()
        assert changes == [db.full_since]
        # Room again (rows deleted) and quiet for the relief time: the next write ends it.
        await db.write("DELETE FROM t")
        assert db.full_since is not None  # too soon after the last refusal
        clock.advance(30)
        assert db.full_relief_due()
        await db.probe_writes()
        assert db.full_since is None
        assert changes[-1] is None
        assert db.refused_while_full == 0
    relieved = [r for r in caplog.records if r.levelno == logging.INFO and "room" in r.getMessage()]
    assert [r.levelname for r in relieved] == ["INFO"]
    assert "4000 rows refused" in relieved[0].getMessage()


async def test_a_database_file_found_empty_starts_anew_with_a_new_epoch_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "g.db"
    async with Database.running(path, clock=FakeClock()) as db:
        assert not db.found_empty  # a new file is a normal first start
        first_epoch = db.epoch
    path.write_bytes(b"")  # truncated: a failed restore, a filesystem repair
    caplog.clear()
    async with Database.running(path, clock=FakeClock()) as db:
        assert db.found_empty
        assert (await db.stats()).as_dict()["found_empty"] is True
        assert db.epoch != first_epoch  # HQ must not take its seqs for the old epoch's
        assert db.boot == 1
    [warning] = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "found EMPTY (0 bytes)" in warning.getMessage()
    assert str(path) in warning.getMessage()
    async with Database.running(path, clock=FakeClock()) as db:
        assert not db.found_empty


async def test_writer_shows_progress_while_idle(tmp_path: Path) -> None:
    async with Database.running(tmp_path / "g.db", clock=FakeClock()) as db:
        first = db.writer_progress
        # nothing is written: only the writer's idle beat can move it (a hung writer fails)
        await until(lambda: db.writer_progress > first, what="the idle writer's progress")


async def test_maintenance_runs(tmp_path: Path) -> None:
    async with Database.running(tmp_path / "g.db", clock=FakeClock()) as db:
        await db.write("CREATE TABLE t (pad BLOB)")
        await db.write_many("INSERT INTO t VALUES (zeroblob(4000))", [()] * 200)
        await db.write("DELETE FROM t")
        before = (await db.stats()).size_bytes
        await db.maintenance()
        await db.close()
        assert (tmp_path / "g.db").stat().st_size < before


async def test_a_rejected_statement_fails_only_its_caller_in_a_shared_batch(
    tmp_path: Path,
) -> None:
    async with Database.running(tmp_path / "g.db", clock=FakeClock()) as db:
        await db.write("CREATE TABLE t (k INTEGER PRIMARY KEY)")
        await db.write("INSERT INTO t VALUES (0)")
        before = (await db.stats()).commits
        # Queued without yielding, so the writer takes them all as one batch.
        good = [db.submit("INSERT INTO t VALUES (?)", (n,)) for n in range(1, 30)]
        duplicate = db.submit("INSERT INTO t VALUES (0)")
        good += [db.submit("INSERT INTO t VALUES (?)", (n,)) for n in range(30, 60)]
        # A write_many is all-or-nothing even when it shares the batch.
        mixed = db.submit_many("INSERT INTO t VALUES (?)", [(100,), (5,), (101,)])
        good.append(db.submit("INSERT INTO t VALUES (200)"))
        results = await asyncio.gather(*good, duplicate, mixed, return_exceptions=True)
        assert results[: len(good)] == [None] * len(good)
        assert isinstance(results[-2], StorageUnavailableError)
        assert "UNIQUE" in str(results[-2])
        assert isinstance(results[-1], StorageUnavailableError)
        stats = await db.stats()
        assert stats.commits - before == 1
        assert stats.pending_writes == 0
        rows = await db.fetchall("SELECT k FROM t ORDER BY k")
        assert [row["k"] for row in rows] == [*range(60), 200]


async def test_a_value_sqlite_cannot_bind_fails_its_caller_and_the_writer_goes_on(
    tmp_path: Path,
) -> None:
    async with Database.running(tmp_path / "g.db", clock=FakeClock()) as db:
        await db.write("CREATE TABLE t (k INTEGER)")
        good = db.submit("INSERT INTO t VALUES (1)")
        huge = db.submit("INSERT INTO t VALUES (?)", (2**64,))  # beyond SQLite's integers
        odd = db.submit("INSERT INTO t VALUES (?)", (object(),))
        results = await asyncio.gather(good, huge, odd, return_exceptions=True)
        assert results[0] is None
        assert isinstance(results[1], StorageUnavailableError)
        assert "cannot bind" in str(results[1])
        assert isinstance(results[2], StorageUnavailableError)
        await db.write("INSERT INTO t VALUES (3)")  # the writer still runs
        rows = await db.fetchall("SELECT k FROM t ORDER BY k")
        assert [row["k"] for row in rows] == [1, 3]


async def test_full_disk_fails_every_caller_of_the_batch(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    async with Database.running(path, clock=FakeClock(), max_page_count=SMALL_PAGE_BUDGET) as db:
        await db.write("CREATE TABLE t (n INTEGER, pad BLOB)")
        small = [db.submit("INSERT INTO t VALUES (?, NULL)", (n,)) for n in range(5)]
        big = db.submit_many("INSERT INTO t VALUES (?, zeroblob(4000))", [(n,) for n in range(200)])
        results = await asyncio.gather(*small, big, return_exceptions=True)
        assert all(isinstance(result, StorageFullError) for result in results), results
        assert await db.fetchall("SELECT n FROM t") == []
        await db.write("INSERT INTO t VALUES (7, NULL)")
        assert [row["n"] for row in await db.fetchall("SELECT n FROM t")] == [7]


async def test_every_close_returns_only_once_closed(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    wal = Path(f"{path}-wal")
    db = await Database.open(path, clock=FakeClock())
    seen: list[bool] = []

    async def second_close() -> None:
        await db.close()
        seen.append(wal.exists())  # SQLite removes the WAL when the last connection closes

    async with asyncio.TaskGroup() as group:
        group.create_task(db.run(), name="storage.writer")
        await db.write("CREATE TABLE t (n INTEGER)")
        assert wal.exists()
        await asyncio.gather(db.close(), second_close())
    assert seen == [False]
    await db.close()
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT count(*) FROM t").fetchone() == (0,)


async def test_atomic_writes_are_never_split_and_fail_as_a_whole(tmp_path: Path) -> None:
    async with Database.running(tmp_path / "g.db", clock=FakeClock(), commit_max_rows=3) as db:
        await db.write("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
        await db.write("CREATE TABLE n (total INTEGER)")
        await db.write("INSERT INTO n VALUES (0)")
        # More statements than commit_max_rows: they still share one transaction, in order.
        steps = [("INSERT INTO t VALUES (?, 'a')", (k,)) for k in range(1, 6)]
        steps.append(("UPDATE n SET total = (SELECT count(*) FROM t)", ()))
        await db.submit_atomic(steps)
        row = await db.fetchone("SELECT total FROM n")
        assert row is not None
        assert row["total"] == 5
        # A bad step rolls back the whole atomic write, and only it.
        before = db.submit("INSERT INTO t VALUES (10, 'b')")
        failing = db.submit_atomic(
            [("INSERT INTO t VALUES (11, 'c')", ()), ("INSERT INTO t VALUES (1, 'dup')", ())]
        )
        after = db.submit("INSERT INTO t VALUES (12, 'd')")
        results = await asyncio.gather(before, failing, after, return_exceptions=True)
        assert results[0] is None
        assert results[2] is None
        assert isinstance(results[1], StorageUnavailableError)
        rows = await db.fetchall("SELECT k FROM t ORDER BY k")
        assert [r["k"] for r in rows] == [1, 2, 3, 4, 5, 10, 12]
        assert (await db.stats()).pending_writes == 0


async def test_a_commit_is_one_call_on_the_writers_thread(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """However many statements a commit holds, the writer hands them to its SQLite thread in
    one call (aiosqlite logs each call it runs there): a hop per statement made a 50 000-item
    price batch cost seconds of thread handoffs."""
    async with Database.running(tmp_path / "g.db", clock=FakeClock()) as db:
        await db.write("CREATE TABLE a (n INTEGER)")
        await db.write("CREATE TABLE b (n INTEGER)")
        # Alternating statements: no two neighbours can be merged into one executemany.
        steps = [
            (f"INSERT INTO {table} VALUES (?)", (n,)) for n in range(500) for table in ("a", "b")
        ]
        caplog.set_level(logging.DEBUG, logger="aiosqlite")
        caplog.clear()
        await db.submit_atomic(steps)
        calls = [r for r in caplog.records if r.name == "aiosqlite" and "executing" in r.msg]
        assert len(calls) == 1
        # The savepoint path after a rejected statement is one call too (both writes fit
        # in one commit, which fails; then each goes under its own savepoint).
        caplog.clear()
        results = await asyncio.gather(
            db.submit_atomic(steps[:200]),
            db.submit("INSERT INTO missing VALUES (1)"),
            return_exceptions=True,
        )
        assert results[0] is None
        assert isinstance(results[1], StorageUnavailableError)
        calls = [r for r in caplog.records if r.name == "aiosqlite" and "executing" in r.msg]
        assert len(calls) == 2
    with sqlite3.connect(tmp_path / "g.db") as check:
        assert check.execute("SELECT count(*) FROM a").fetchone() == (600,)
