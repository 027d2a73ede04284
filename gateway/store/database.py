"""The one SQLite database: checks at open, migrations, and the group-commit write path.

One writer connection owned by :meth:`Database.run` (the ``storage.writer`` task) and one
reader connection. Writers never wait for their own round trip: :meth:`Database.submit` queues
a statement and returns a future that resolves once the transaction holding it has committed.
The writer gathers up to ``commit_max_rows`` statements or ``commit_interval_s`` and runs them
in one transaction, so durability (``synchronous=FULL``) costs one fsync per batch, not per
event, and the aiosqlite thread hop is per batch too.

A full disk (or page budget) starts an episode, logged once: :attr:`Database.full_since` is set
until writes succeed again with room to spare, at least ``_FULL_RELIEF_S`` after the last
refusal (a nearly full disk lets small writes through between refused ones: without that
hysteresis every other commit would log). The outbox keeper turns it into the ``storage.full``
alert. A database file found empty (0 bytes) is started anew, with a new epoch, and flagged
(:attr:`Database.found_empty`) for a warning and an alert.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from gateway.clock import Clock, isoformat_utc
from gateway.errors import (
    SchemaTooNewError,
    StorageCorruptError,
    StorageError,
    StorageFullError,
    StorageUnavailableError,
)
from gateway.store.migrations import MIGRATIONS, Migration
from gateway.store.sql_functions import SQL_FUNCTIONS

__all__ = ["Database", "StorageStats"]

_T = TypeVar("_T")

_LOGGER = logging.getLogger(__name__)

_IDLE_WAKE_S = 1.0  # the writer loop ticks at least this often (watchdog progress)
_JOURNAL_SIZE_LIMIT = 8 * 1024 * 1024
# A batch this large already spreads its fsync thin: the writer commits it at once instead of
# waiting out the window (bulk producers then pay no latency; trickles still get grouped, and
# whatever arrives during a commit goes into the next one).
_WORTH_A_COMMIT_ROWS = 100

# A full-disk episode ends only with writes succeeding this long after the last refusal...
_FULL_RELIEF_S = 30.0
# ...and this much free space on the filesystem (a checkpoint or a burst needs room).
_FULL_RELIEF_FREE_BYTES = 1024 * 1024

# Primary SQLite result codes (``sqlite_errorcode & 0xFF``); messages are only a fallback.
_SQLITE_ERROR = 1
_SQLITE_READONLY = 8
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_TOOBIG = 18
_SQLITE_CONSTRAINT = 19
_SQLITE_MISMATCH = 20
_SQLITE_RANGE = 25
_SQLITE_NOTADB = 26
# Errors that reject one statement but leave the transaction usable (unlike FULL or IOERR,
# after which SQLite may have rolled the whole transaction back).
_STATEMENT_CODES = frozenset(
    {_SQLITE_ERROR, _SQLITE_TOOBIG, _SQLITE_CONSTRAINT, _SQLITE_MISMATCH, _SQLITE_RANGE}
)


@dataclass(frozen=True, slots=True)
class StorageStats:
    path: str
    size_bytes: int
    free_disk_bytes: int
    schema_version: int
    epoch: str
    boot: int
    pending_writes: int
    commits: int
    rows_committed: int
    last_commit_at: datetime | None
    full_since: datetime | None = None  # writes refused: the disk (or page budget) is full
    refused_while_full: int = 0  # rows rolled back since then
    found_empty: bool = False  # the file was 0 bytes at open and was started anew

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "size_bytes": self.size_bytes,
            "free_disk_bytes": self.free_disk_bytes,
            "schema_version": self.schema_version,
            "epoch": self.epoch,
            "boot": self.boot,
            "pending_writes": self.pending_writes,
            "commits": self.commits,
            "rows_committed": self.rows_committed,
            "last_commit_at": None
            if self.last_commit_at is None
            else isoformat_utc(self.last_commit_at),
            "full_since": None if self.full_since is None else isoformat_utc(self.full_since),
            "refused_while_full": self.refused_while_full,
            "found_empty": self.found_empty,
        }


@dataclass(slots=True)
class _Write:
    """What one caller submitted: statements (each with its rows) that always share a
    transaction, and the future resolved after that transaction committed."""

    steps: list[tuple[str, list[Sequence[Any]]]]
    future: asyncio.Future[None]
    weight: int | None = None  # what the write counts for toward a commit; None: its rows

    @property
    def rows(self) -> int:
        if self.weight is not None:
            return self.weight
        return sum(len(rows) for _sql, rows in self.steps)


@dataclass(slots=True)
class _FullEpisode:
    since: datetime
    last_refusal: float  # monotonic
    refused_rows: int


@dataclass(slots=True)
class _Counters:
    commits: int = 0
    rows: int = 0
    last_commit_at: datetime | None = None
    progress: int = 0


def _primary_code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def _is_statement_error(exc: sqlite3.Error) -> bool:
    """True when only the statement failed (constraint, bad SQL or binding), not the storage."""
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError | sqlite3.InterfaceError):
        return True
    return _primary_code(exc) in _STATEMENT_CODES


def _translate(path: Path, exc: BaseException, doing: str) -> StorageError:
    """Map a sqlite3/OS error to the gateway's storage errors, naming the file."""
    message = str(exc)
    lowered = message.lower()
    code = _primary_code(exc)
    if code == _SQLITE_FULL or "disk is full" in lowered:
        return StorageFullError(path, f"{doing}: {message}; the transaction was rolled back")
    if (
        code in {_SQLITE_CORRUPT, _SQLITE_NOTADB}
        or "malformed" in lowered
        or "not a database" in lowered
    ):
        return StorageCorruptError(path, f"{doing}: {message}")
    if code == _SQLITE_READONLY or "readonly" in lowered or _on_read_only_filesystem(path):
        return StorageUnavailableError(path, f"{doing}: read-only filesystem ({message})")
    return StorageUnavailableError(path, f"{doing}: {message}")


def _is_empty_file(path: Path) -> bool:
    """A database file that exists with 0 bytes (truncated, or a failed restore): SQLite
    would silently treat it as a new database."""
    try:
        return path.stat().st_size == 0
    except OSError:
        return False


def _on_read_only_filesystem(path: Path) -> bool:
    try:
        return bool(os.statvfs(path.parent).f_flag & os.ST_RDONLY)
    except OSError:
        return False


class Database:
    """The gateway's SQLite database. Open with :meth:`open`; run :meth:`run` as a task."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Clock,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        epoch: str,
        boot: int,
        commit_interval_s: float,
        commit_max_rows: int,
        schema_version: int,
        found_empty: bool = False,
    ) -> None:
        self.path = path
        self.schema_version = schema_version
        self.found_empty = found_empty
        self.epoch = epoch
        self.boot = boot
        self._clock = clock
        self._writer = writer
        self._reader = reader
        self._commit_interval_s = commit_interval_s
        self._commit_max_rows = commit_max_rows
        self._queue: asyncio.Queue[_Write | None] = asyncio.Queue()
        self._pending = 0
        self._counters = _Counters()
        self._closing = False
        self._closed = False
        self._running = False
        self._finished = asyncio.Event()
        self._closed_event = asyncio.Event()
        self._failing = False  # log storage failures once, and the recovery once
        self._full: _FullEpisode | None = None
        #: Called when a full-disk episode starts or ends (the outbox keeper's wake-up).
        self.on_full_change: Callable[[], None] | None = None
        self._maintenance: asyncio.Future[None] | None = None

    # --- opening ------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        clock: Clock,
        commit_interval_s: float = 0.05,
        commit_max_rows: int = 500,
        busy_timeout_s: float = 5.0,
        max_page_count: int | None = None,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> Database:
        """Open (creating if needed), check and migrate the database at ``path``.

        ``migrations`` defaults to the gateway's schema; the HQ reference consumer passes its
        own (every schema starts with the ``meta`` table)."""
        path = Path(path)
        if not path.parent.is_dir():
            raise StorageUnavailableError(path, f"directory {path.parent} does not exist")
        found_empty = _is_empty_file(path)
        writer = await cls._connect(path, busy_timeout_s)
        reader: aiosqlite.Connection | None = None
        try:
            # Check before any pragma writes to the file: a damaged one stays untouched.
            await cls._check_integrity(path, writer)
            if found_empty:  # and nothing came back from a WAL beside it either
                found_empty = await cls._user_version(path, writer) == 0
            await cls._configure_writer(path, writer, max_page_count)
            await cls._migrate(path, writer, migrations)
            epoch, boot = await cls._identity(path, writer, clock)
            reader = await cls._connect(path, busy_timeout_s)
            await reader.execute("PRAGMA query_only = ON")
        except BaseException:
            await writer.close()
            if reader is not None:
                await reader.close()
            raise
        _LOGGER.info(
            "database %s: schema v%d, epoch %s, boot #%d", path, migrations[-1].version, epoch, boot
        )
        if found_empty:
            _LOGGER.warning(
                "database %s was found EMPTY (0 bytes) and started anew with epoch %s: "
                "whatever it held is gone; if it should not be empty, stop storegw and restore "
                "a backup (docs/operations.md)",
                path,
                epoch,
            )
        return cls(
            path,
            clock=clock,
            writer=writer,
            reader=reader,
            epoch=epoch,
            boot=boot,
            commit_interval_s=commit_interval_s,
            commit_max_rows=commit_max_rows,
            schema_version=migrations[-1].version,
            found_empty=found_empty,
        )

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, path: Path, **kwargs: Any) -> AsyncIterator[Database]:
        """Open, run the writer in a task named ``storage.writer``, and close on exit."""
        database = await cls.open(path, **kwargs)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(database.run(), name="storage.writer")
                try:
                    yield database
                finally:
                    await database.close()
        finally:
            await database.close()

    @staticmethod
    async def _connect(path: Path, busy_timeout_s: float) -> aiosqlite.Connection:
        try:
            connection = await aiosqlite.connect(path, timeout=busy_timeout_s, isolation_level=None)
        except (sqlite3.Error, OSError) as exc:
            raise _translate(path, exc, "cannot open") from exc
        connection.row_factory = sqlite3.Row
        try:
            await connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            for name, arity, function in SQL_FUNCTIONS:
                await connection.create_function(name, arity, function, deterministic=True)
        except sqlite3.Error as exc:
            await connection.close()
            raise _translate(path, exc, "cannot open") from exc
        return connection

    @staticmethod
    async def _configure_writer(
        path: Path, writer: aiosqlite.Connection, max_page_count: int | None
    ) -> None:
        try:
            cursor = await writer.execute("SELECT count(*) FROM sqlite_schema")
            row = await cursor.fetchone()
            fresh = row is not None and row[0] == 0
            if fresh:
                # Must precede the first table; later it would need a full VACUUM.
                await writer.execute("PRAGMA auto_vacuum = INCREMENTAL")
            cursor = await writer.execute("PRAGMA journal_mode = WAL")
            mode = await cursor.fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                raise StorageUnavailableError(path, f"cannot enable WAL (got {mode and mode[0]})")
            await writer.execute("PRAGMA synchronous = FULL")
            await writer.execute("PRAGMA foreign_keys = ON")
            await writer.execute(f"PRAGMA journal_size_limit = {_JOURNAL_SIZE_LIMIT}")
            if max_page_count is not None:
                await writer.execute(f"PRAGMA max_page_count = {int(max_page_count)}")
        except StorageError:
            raise
        except sqlite3.Error as exc:
            raise _translate(path, exc, "cannot configure") from exc

    @staticmethod
    async def _check_integrity(path: Path, writer: aiosqlite.Connection) -> None:
        try:
            cursor = await writer.execute("PRAGMA quick_check")
            rows = await cursor.fetchall()
        except sqlite3.DatabaseError as exc:
            raise _translate(path, exc, "quick_check failed") from exc
        findings = [str(row[0]) for row in rows]
        if findings != ["ok"]:
            raise StorageCorruptError(path, "quick_check found damage: " + "; ".join(findings[:5]))

    @staticmethod
    async def _user_version(path: Path, writer: aiosqlite.Connection) -> int:
        try:
            cursor = await writer.execute("PRAGMA user_version")
            row = await cursor.fetchone()
        except sqlite3.Error as exc:
            raise _translate(path, exc, "cannot read the schema version") from exc
        return int(row[0]) if row else 0

    @staticmethod
    async def _migrate(
        path: Path, writer: aiosqlite.Connection, migrations: Sequence[Migration]
    ) -> None:
        try:
            cursor = await writer.execute("PRAGMA user_version")
            row = await cursor.fetchone()
            current = int(row[0]) if row else 0
            supported = migrations[-1].version
            if current > supported:
                raise SchemaTooNewError(path, current, supported)
            for migration in migrations:
                if migration.version <= current:
                    continue
                await writer.execute("BEGIN IMMEDIATE")
                try:
                    for statement in migration.statements:
                        await writer.execute(statement)
                    await writer.execute(f"PRAGMA user_version = {migration.version}")
                    await writer.execute("COMMIT")
                except BaseException:
                    await writer.execute("ROLLBACK")
                    raise
                _LOGGER.info(
                    "database %s migrated to v%d: %s",
                    path,
                    migration.version,
                    migration.description,
                )
        except StorageError:
            raise
        except sqlite3.Error as exc:
            raise _translate(path, exc, "migration failed") from exc

    @staticmethod
    async def _identity(path: Path, writer: aiosqlite.Connection, clock: Clock) -> tuple[str, int]:
        try:
            await writer.execute("BEGIN IMMEDIATE")
            try:
                await writer.execute(
                    "INSERT OR IGNORE INTO meta(key, value) VALUES ('epoch', ?), ('created_at', ?)",
                    (secrets.token_hex(8), isoformat_utc(clock.utc_now())),
                )
                await writer.execute(
                    "INSERT INTO meta(key, value) VALUES ('boot', '1') "
                    "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
                )
                cursor = await writer.execute(
                    "SELECT key, value FROM meta WHERE key IN ('epoch', 'boot')"
                )
                values = {str(row[0]): str(row[1]) for row in await cursor.fetchall()}
                await writer.execute("COMMIT")
            except BaseException:
                await writer.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise _translate(path, exc, "cannot record boot") from exc
        return values["epoch"], int(values["boot"])

    # --- writing ------------------------------------------------------------------------

    @property
    def writer_progress(self) -> int:
        return self._counters.progress

    def submit(self, sql: str, params: Sequence[Any] = ()) -> asyncio.Future[None]:
        """Queue one statement; the future resolves after its transaction committed."""
        return self._enqueue([(sql, [params])])

    async def write(self, sql: str, params: Sequence[Any] = ()) -> None:
        await self.submit(sql, params)

    async def write_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self.submit_many(sql, rows)

    def submit_many(
        self, sql: str, rows: Iterable[Sequence[Any]], *, weight: int | None = None
    ) -> asyncio.Future[None]:
        """Queue one statement for many rows, committed together; one future for all.
        ``weight``: what the write counts for toward filling a commit when a row stands for
        many records (the outbox stores many events in a row); default its row count."""
        return self._enqueue([(sql, list(rows))], weight)

    def submit_atomic(
        self, statements: Iterable[tuple[str, Sequence[Any]]], *, weight: int | None = None
    ) -> asyncio.Future[None]:
        """Queue statements that must never be split: they run in this order in one
        transaction (all committed or none), e.g. a price batch applied and its receipt."""
        return self._enqueue([(sql, [params]) for sql, params in statements], weight)

    def _enqueue(
        self, steps: list[tuple[str, list[Sequence[Any]]]], weight: int | None = None
    ) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._closing:
            future.set_exception(StorageUnavailableError(self.path, "database is closed"))
            return future
        item = _Write(steps, future, weight)
        self._pending += item.rows
        self._queue.put_nowait(item)
        return future

    async def run(self) -> None:
        """The writer loop. Returns once :meth:`close` was requested and the queue is empty."""
        if self._closing:  # close() began before this task ran: close() drains the queue
            self._finished.set()
            return
        self._running = True
        try:
            while True:
                self._counters.progress += 1
                if self._maintenance is not None:  # between batches, never inside one
                    await self._run_maintenance(self._maintenance)
                    self._maintenance = None
                try:
                    async with asyncio.timeout(_IDLE_WAKE_S):  # no task per wait, as wait_for
                        first = await self._queue.get()
                except TimeoutError:
                    if self._closing and self._queue.empty():
                        break
                    continue
                if first is None:
                    break
                batch, stop = await self._gather(first)
                await self._commit(batch)
                if stop:
                    break
        finally:
            self._running = False
            if self._maintenance is not None and not self._maintenance.done():
                self._maintenance.set_exception(StorageUnavailableError(self.path, "closed"))
            self._finished.set()

    async def _gather(self, first: _Write) -> tuple[list[_Write], bool]:
        batch = [first]
        rows = first.rows
        deadline = asyncio.get_running_loop().time() + self._commit_interval_s
        while rows < self._commit_max_rows:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0 or rows >= _WORTH_A_COMMIT_ROWS:
                    break
                try:
                    async with asyncio.timeout(remaining):
                        item = await self._queue.get()
                except TimeoutError:
                    break
            if item is None:
                return batch, True
            batch.append(item)
            rows += item.rows
        return batch, False

    async def _commit(self, batch: list[_Write]) -> None:
        rows = sum(item.rows for item in batch)
        rejected: dict[int, StorageError] = {}
        try:
            try:
                await self._transact(_coalesce(batch))
            except sqlite3.Error as exc:
                if len(batch) == 1 or not _is_statement_error(exc):
                    raise
                # One caller's bad statement must not fail the others sharing its commit.
                rejected = await self._transact_isolated(batch)
        except sqlite3.Error as exc:
            error = _translate(self.path, exc, "write failed")
            if _is_statement_error(exc):
                _LOGGER.warning("%s (%d rows rolled back)", error, rows)
            elif isinstance(error, StorageFullError):
                self._note_full(error, rows)
            elif not self._failing:
                self._failing = True
                _LOGGER.error("%s (%d rows rolled back)", error, rows)
            self._settle(batch, rows, lambda _item: error)
            return
        except BaseException:
            # Cancelled mid-commit: the outcome is unknown, but nobody may wait forever.
            unknown = StorageUnavailableError(self.path, "writer stopped during a commit")
            self._settle(batch, rows, lambda _item: unknown)
            raise
        if self._failing:
            self._failing = False
            _LOGGER.info("database %s: writes succeed again", self.path)
        if self._full is not None and self.full_relief_due():
            self._end_full_episode()
        committed = sum(item.rows for item in batch if id(item) not in rejected)
        self._counters.commits += 1
        self._counters.rows += committed
        self._counters.last_commit_at = self._clock.utc_now()
        self._settle(batch, rows, lambda item: rejected.get(id(item)))

    # --- full disk ----------------------------------------------------------------------

    @property
    def full_since(self) -> datetime | None:
        """When the current full-disk episode began; None while writes have room."""
        return None if self._full is None else self._full.since

    @property
    def refused_while_full(self) -> int:
        """Rows rolled back for lack of room in the current episode (0 outside one)."""
        return 0 if self._full is None else self._full.refused_rows

    def full_relief_due(self) -> bool:
        """Whether the next successful write ends the episode: no refusal for a while and
        room to spare on the filesystem."""
        full = self._full
        if full is None or self._clock.monotonic() - full.last_refusal < _FULL_RELIEF_S:
            return False
        try:
            return shutil.disk_usage(self.path.parent).free >= _FULL_RELIEF_FREE_BYTES
        except OSError:
            return False

    async def probe_writes(self) -> None:
        """One tiny write, to learn whether the disk has room again while nothing else writes
        (a full episode ends only on a successful write). StorageError if it still fails."""
        await self.write("UPDATE meta SET value = value WHERE key = 'boot'")

    def _note_full(self, error: StorageError, rows: int) -> None:
        now = self._clock.monotonic()
        if self._full is not None:
            self._full.last_refusal = now
            self._full.refused_rows += rows
            return
        self._full = _FullEpisode(self._clock.utc_now(), now, rows)
        _LOGGER.error(
            "%s (%d rows rolled back); writes are refused until space is freed "
            "(alert storage.full; not logged again for this episode)",
            error,
            rows,
        )
        if self.on_full_change is not None:
            self.on_full_change()

    def _end_full_episode(self) -> None:
        full, self._full = self._full, None
        assert full is not None
        _LOGGER.info(
            "database %s: the disk has room again, writes succeed (full since %s, %d rows "
            "refused meanwhile)",
            self.path,
            isoformat_utc(full.since),
            full.refused_rows,
        )
        if self.on_full_change is not None:
            self.on_full_change()

    async def _transact(self, groups: list[tuple[str, list[Sequence[Any]]]]) -> None:
        """Run ``groups`` in one transaction, all of it in one call on the writer's thread:
        one thread hop per commit, however many statements it holds."""
        await _on_connection_thread(self._writer, _run_transaction, self._writer, groups)

    async def _transact_isolated(self, batch: list[_Write]) -> dict[int, StorageError]:
        """Slow path after a statement error: each write under its own savepoint, still one
        commit (and one thread hop). Returns the rejected writes (by id) with their errors."""
        failed = await _on_connection_thread(
            self._writer, _run_isolated, self._writer, [item.steps for item in batch]
        )
        rejected = {
            id(batch[index]): _translate(self.path, exc, "write rejected")
            for index, exc in failed.items()
        }
        for error in rejected.values():
            _LOGGER.warning("%s", error)
        return rejected

    def _settle(
        self,
        batch: list[_Write],
        rows: int,
        error_for: Callable[[_Write], StorageError | None],
    ) -> None:
        self._pending -= rows
        for item in batch:
            if item.future.done():  # the caller cancelled its wait
                continue
            error = error_for(item)
            if error is None:
                item.future.set_result(None)
            else:
                item.future.set_exception(error)

    # --- reading and upkeep -------------------------------------------------------------

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            rows = await self._reader.execute_fetchall(sql, params)  # one thread hop
        except sqlite3.Error as exc:
            raise _translate(self.path, exc, "read failed") from exc
        except ValueError as exc:  # aiosqlite's "Connection closed"
            if not self._closing:
                raise
            raise StorageUnavailableError(self.path, "database is closed") from exc
        return list(rows)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def maintenance(self) -> None:
        """Give freed pages back to the filesystem and keep the WAL short.

        Runs on the writer between two group commits (never inside one); waits for it."""
        if self._maintenance is None:
            self._maintenance = asyncio.get_running_loop().create_future()
        future = self._maintenance
        if not self._running:  # no writer loop (one-shot use): run it here
            self._maintenance = None
            await self._run_maintenance(future)
        await asyncio.shield(future)

    async def _run_maintenance(self, future: asyncio.Future[None]) -> None:
        try:
            # executescript steps the pragma to completion; a plain execute() frees one page.
            await self._writer.executescript(
                "PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE);"
            )
        except sqlite3.Error as exc:
            if not future.done():
                future.set_exception(_translate(self.path, exc, "maintenance failed"))
            return
        if not future.done():
            future.set_result(None)

    async def stats(self) -> StorageStats:
        size = sum(
            candidate.stat().st_size
            for candidate in (self.path, Path(f"{self.path}-wal"))
            if candidate.exists()
        )
        free = shutil.disk_usage(self.path.parent).free
        return StorageStats(
            path=str(self.path),
            size_bytes=size,
            free_disk_bytes=free,
            schema_version=self.schema_version,
            epoch=self.epoch,
            boot=self.boot,
            pending_writes=self._pending,
            commits=self._counters.commits,
            rows_committed=self._counters.rows,
            last_commit_at=self._counters.last_commit_at,
            full_since=self.full_since,
            refused_while_full=self.refused_while_full,
            found_empty=self.found_empty,
        )

    async def close(self) -> None:
        """Flush pending writes, stop the writer, checkpoint and close. Idempotent; every
        caller returns only once both connections are closed."""
        if self._closed:
            await self._closed_event.wait()
            return
        if not self._closing:
            # One loop turn first: writes already decided in this step but submitted at its
            # end (the outbox's appends of one step share a row) still get in.
            await asyncio.sleep(0)
        if not self._closing:
            self._closing = True
            self._queue.put_nowait(None)
        if self._running:
            await self._finished.wait()
        elif not self._queue.empty():
            await self._drain_without_runner()
        if self._closed:  # a concurrent close() got here first
            await self._closed_event.wait()
            return
        self._closed = True
        try:
            with contextlib.suppress(sqlite3.Error):
                await self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            await self._writer.close()
            await self._reader.close()
        finally:
            self._closed_event.set()

    async def _drain_without_runner(self) -> None:
        """close() without run() (start-up aborted): commit what was queued anyway."""
        batch: list[_Write] = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None:
                batch.append(item)
        if batch:
            await self._commit(batch)


def _coalesce(batch: list[_Write]) -> list[tuple[str, list[Sequence[Any]]]]:
    """Consecutive runs of the same statement become one executemany (order is kept)."""
    groups: list[tuple[str, list[Sequence[Any]]]] = []
    for item in batch:
        for sql, rows in item.steps:
            if groups and groups[-1][0] == sql:
                groups[-1][1].extend(rows)
            else:
                groups.append((sql, list(rows)))
    return groups


async def _on_connection_thread(
    connection: aiosqlite.Connection, function: Callable[..., _T], *args: Any
) -> _T:
    """Run ``function(*args)`` on ``connection``'s own thread, where its sqlite3 connection
    lives. aiosqlite hops to that thread once per statement and has no public call for a
    whole transaction; ``Connection._execute`` is how its own methods queue work there
    (pyproject.toml bounds the aiosqlite versions that have it)."""
    result: _T = await connection._execute(function, *args)  # type: ignore[no-untyped-call]
    return result


def _sqlite3_connection(connection: aiosqlite.Connection) -> sqlite3.Connection:
    """The sqlite3 connection inside ``connection``: only on its thread."""
    return connection._conn


def _execute_group(raw: sqlite3.Connection, sql: str, rows: list[Sequence[Any]]) -> None:
    try:
        if len(rows) == 1:
            raw.execute(sql, rows[0])
        else:
            raw.executemany(sql, rows)
    except (OverflowError, TypeError, ValueError) as exc:
        # A value SQLite cannot bind (an integer beyond 64 bits, …) is that statement's
        # error, as a rejected constraint is: its caller is told, the writer goes on.
        raise sqlite3.InterfaceError(f"cannot bind a value: {exc}") from exc


def _run_transaction(
    connection: aiosqlite.Connection, groups: list[tuple[str, list[Sequence[Any]]]]
) -> None:
    """On the writer's thread: the statements in one transaction, rolled back on any error
    (the transaction never stays open after this returns)."""
    raw = _sqlite3_connection(connection)
    raw.execute("BEGIN IMMEDIATE")
    try:
        for sql, rows in groups:
            _execute_group(raw, sql, rows)
        raw.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            raw.execute("ROLLBACK")
        raise


def _run_isolated(
    connection: aiosqlite.Connection, writes: list[list[tuple[str, list[Sequence[Any]]]]]
) -> dict[int, sqlite3.Error]:
    """On the writer's thread: each write under its own savepoint, one commit. Returns the
    writes (by index) whose statements were rejected, with the error."""
    raw = _sqlite3_connection(connection)
    rejected: dict[int, sqlite3.Error] = {}
    raw.execute("BEGIN IMMEDIATE")
    try:
        for index, steps in enumerate(writes):
            raw.execute("SAVEPOINT write")
            try:
                for sql, rows in steps:
                    _execute_group(raw, sql, rows)
            except sqlite3.Error as exc:
                if not _is_statement_error(exc):
                    raise
                raw.execute("ROLLBACK TO write")
                rejected[index] = exc
            raw.execute("RELEASE write")
        raw.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            raw.execute("ROLLBACK")
        raise
    return rejected
