"""The PostgreSQL sink of ``storegw hq tail``: envelopes stored batch by batch, idempotent,
safe with several consumers sharing the load (``$share/<group>/``).

One transaction per batch of envelopes (whatever the link gathered: ``hq tail`` waits up to
5 ms for more, up to 256):

1. ``BEGIN`` and lock the ``hq_marks`` rows of every ``(store, stream, epoch)`` the batch
   touches that no other transaction holds (``SELECT … FOR UPDATE SKIP LOCKED``; a key new to
   this consumer gets its row first);
2. let each key's :class:`~gateway.hq.intake.Ledger`, loaded from those rows, decide which
   events are new and move the watermark; ``COPY`` the new events into the day's partition of
   ``hq_event_log``;
3. write the ledgers back, record conflicts and commit — and only then return the acks, each
   the watermark *as committed*.

Keys another consumer's batch held follow in a second transaction that waits for their rows
(``FOR UPDATE`` in key order, holding no other row meanwhile, so two consumers never wait on
each other in a cycle): with mosquitto's ``$share`` round-robin, consumers' batches share most
keys, and waiting for all of them would make the consumers take turns.

A consumer killed anywhere before the commit leaves nothing behind (the transaction rolls back)
and acked nothing; the store re-sends from the acked watermark and the ledger skips what another
consumer stored meanwhile. PostgreSQL unreachable: every batch raises
:class:`~gateway.errors.StorageUnavailableError`, so the link leaves the messages unacknowledged
and retries; :attr:`PostgresSink.unavailable_since` tells ``hq tail`` how long that has lasted
(PostgreSQL answering but refusing every batch — a privilege revoked, a read-only server —
counts the same: nothing is taken into custody either way).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus

from gateway.backoff import Backoff
from gateway.clock import Clock
from gateway.errors import StorageError
from gateway.hq.intake import (
    Ack,
    EventRow,
    Key,
    Ledger,
    Origin,
    ack_for,
    read_envelope,
    warn_deferred,
    warn_expired,
)
from gateway.hq.postgres_schema import ensure_partition
from gateway.hq.postgres_session import PostgresSession, describe_url
from gateway.hq.postgres_statements import (
    COPY_EVENTS,
    HELD_IDS,
    LOCK_FREE_MARKS,
    LOCK_MARKS,
    NEW_MARKS,
    RECORD_CONFLICTS,
    WRITE_MARKS,
    copy_text,
    key_columns,
)

__all__ = ["EmitRows", "PostgresSink", "describe_url"]  # describe_url: postgres_session

_LOGGER = logging.getLogger(__name__)

#: Receives each batch's new events of one key: (store, stream, epoch, event objects).
EmitRows = Callable[[str, str, str, list[dict[str, Any]]], None]

_RETRIES = 5  # a deadlock or serialisation failure: the whole batch again
# Before a retry: the transaction that won goes on first instead of colliding again.
_RETRY_DELAY_S = 0.05, 1.0
_COMMIT_TIMEOUT_S = 60.0  # one batch's transaction; beyond it PostgreSQL counts as unreachable


@dataclass(slots=True)
class _Outcome:
    """What one committed batch did."""

    ledgers: dict[Key, Ledger] = field(default_factory=dict)  # as committed
    fresh: dict[Key, list[EventRow]] = field(default_factory=dict)  # stored now
    conflicts: dict[Key, list[tuple[int, str, str]]] = field(default_factory=dict)
    markers: list[tuple[Key, EventRow]] = field(default_factory=list)  # new expiry markers
    deferred: dict[Key, list[EventRow]] = field(default_factory=dict)  # no room: not taken
    skipped: list[Key] = field(default_factory=list)  # held by another transaction: not taken
    repeated: int = 0
    lost: int = 0


class PostgresSink:
    """Stores envelopes in PostgreSQL and answers with the committed watermarks."""

    def __init__(
        self, url: str, *, clock: Clock, topic_prefix: str = "retail/v1/", emit: EmitRows | None
    ) -> None:
        self._session = PostgresSession(url, clock=clock)
        self.name = self._session.name
        self._clock = clock
        self._prefix = topic_prefix
        self._emit = emit
        self._partitions: set[str] = set()
        self._partitions_on = 0  # the connection (count) they were made through
        self._known_keys: set[Key] = set()  # hq_marks has their rows
        self._ledgers: dict[Key, Ledger] = {}  # the last committed state seen, for reports
        self._deferring: set[Key] = set()  # keys whose events waited for room (logged)
        self.stored = 0
        self.duplicates = 0
        self.rejected = 0
        self.expired = 0
        self.conflicts: dict[Key, set[int]] = {}

    async def open(self) -> None:
        """Connect, migrate, make today's and tomorrow's partitions; StorageUnavailableError if
        PostgreSQL cannot be reached, ConfigError for a database that cannot hold any text."""
        connection = await self._session.connect()
        try:
            await self._ensure_partitions(connection, self._clock.utc_now())
        except psycopg.Error as exc:
            await self._session.drop()
            raise self._session.unavailable(exc) from None

    async def close(self) -> None:
        await self._session.close()

    @property
    def unavailable_since(self) -> float | None:
        """clock.monotonic() of the first failure of the ongoing outage; None: storing."""
        return self._session.unavailable_since

    def watermark(self, store: str, stream: str, epoch: str) -> int:
        ledger = self._ledgers.get((store, stream, epoch))
        return 0 if ledger is None else ledger.watermark

    def gaps(self) -> dict[Key, tuple[int, int]]:
        """Per key this consumer touched, the first missing range above the watermark (as of
        its last commit: another consumer may have closed it since)."""
        found = {}
        for key, ledger in self._ledgers.items():
            gap = ledger.first_gap()
            if gap is not None:
                found[key] = gap
        return found

    async def receive_many(
        self, payloads: list[bytes], *, origins: Sequence[Origin] | None = None
    ) -> list[Ack]:
        """Store several envelopes in one transaction; returns one ack per key they touched,
        to publish once this returns. Garbage (an envelope not of its topic's store and stream
        in ``origins`` too) is logged and skipped. Raises StorageError (nothing committed,
        nothing to ack) when PostgreSQL fails."""
        batch = self._read(payloads, origins)
        if not batch:
            return []
        outcome = await self._commit(batch, skip_locked=True)
        acks = self._taken(outcome)
        if outcome.skipped:
            # Keys another consumer's batch holds: waited for now, in a transaction of their
            # own (holding no other key meanwhile, so no two consumers wait in a cycle).
            rest = await self._commit({key: batch[key] for key in outcome.skipped})
            acks += self._taken(rest)
        return acks

    def _taken(self, outcome: _Outcome) -> list[Ack]:
        """Account for a committed transaction; its acks (the watermarks as committed)."""
        self._session.recovered()
        self._ledgers.update(outcome.ledgers)
        self._known_keys.update(outcome.ledgers)
        self.stored += sum(len(rows) for rows in outcome.fresh.values())
        self.duplicates += outcome.repeated
        self.expired += outcome.lost
        for key, marker in outcome.markers:
            warn_expired(_LOGGER, key, [marker])
        for key, rows in outcome.deferred.items():
            if key not in self._deferring:  # once per key: a hostile store sends many
                self._deferring.add(key)
                warn_deferred(_LOGGER, key, rows)
        self._note_conflicts(outcome.conflicts)
        if self._emit is not None:
            for key, rows in outcome.fresh.items():
                if rows:
                    self._emit(*key, [row.event_object for row in rows])
        return [
            ack_for(self._prefix, key, ledger.watermark)
            for key, ledger in outcome.ledgers.items()
            if ledger.watermark
        ]

    def _read(
        self, payloads: list[bytes], origins: Sequence[Origin] | None
    ) -> dict[Key, list[EventRow]]:
        """The payloads' events by key, in seq order; garbage counted and logged."""
        batch: dict[Key, list[EventRow]] = {}
        for index, payload in enumerate(payloads):
            try:
                read = read_envelope(payload, None if origins is None else origins[index])
            except ValueError as exc:
                self.rejected += 1
                _LOGGER.warning("rejected envelope: %s", exc)
                continue
            batch.setdefault(read.key, []).extend(read.events)
        for events in batch.values():
            events.sort(key=lambda row: row.seq)
        return batch

    async def _commit(
        self, batch: dict[Key, list[EventRow]], *, skip_locked: bool = False
    ) -> _Outcome:
        """:meth:`_store` on a live connection, again after a deadlock or a missing partition;
        PostgreSQL's errors translated (unreachable: StorageUnavailableError). ``skip_locked``:
        keys whose ledger row another transaction holds are left out (``skipped``)."""
        now = self._clock.utc_now()
        backoff = Backoff(*_RETRY_DELAY_S)
        for attempt in range(1, _RETRIES + 1):
            connection = await self._session.connect()
            try:
                async with asyncio.timeout(_COMMIT_TIMEOUT_S):
                    await self._ensure_partitions(connection, now)
                    return await self._store(connection, batch, now, skip_locked)
            except TimeoutError:
                await self._session.drop()
                raise self._session.unavailable(
                    psycopg.OperationalError(f"no answer within {_COMMIT_TIMEOUT_S:g} s")
                ) from None
            except (
                pg_errors.DeadlockDetected,
                pg_errors.SerializationFailure,
                # No row fits a partition (no CHECK in the schema raises this otherwise): the
                # day's partition was dropped, or the database restored from a copy made before
                # it was. Made again on the retry, not remembered as made.
                pg_errors.CheckViolation,
            ) as exc:
                self._partitions.clear()
                if attempt == _RETRIES:
                    reason = f"gave up after {_RETRIES} tries: {exc}"
                    raise self._session.refusing(StorageError(self.name, reason)) from exc
                _LOGGER.info("batch tried again: %s", str(exc).strip().splitlines()[0])
                await asyncio.sleep(backoff.next_delay())
            except psycopg.OperationalError as exc:
                await self._session.drop()
                raise self._session.unavailable(exc) from None
            except psycopg.Error as exc:
                await self._session.drop()
                raise self._session.refusing(StorageError(self.name, str(exc).strip())) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _ensure_partitions(
        self, connection: psycopg.AsyncConnection[Any], now: datetime
    ) -> None:
        if self._partitions_on != self._session.connections:
            # A new connection may be to another server (a failover, a restored copy).
            self._partitions.clear()
            self._partitions_on = self._session.connections
        today = now.astimezone(UTC).date()
        for day in (today, today + timedelta(days=1)):  # tomorrow's ahead of midnight
            name = f"{day:%Y%m%d}"
            if name in self._partitions:
                continue
            try:
                # Tomorrow's may wait for a better moment; today's must be made.
                await ensure_partition(
                    connection, day, lock_wait="10s" if day == today else "200ms"
                )
            except pg_errors.LockNotAvailable:
                if day == today:
                    raise
                # DDL on the log (a retention job's DETACH) holds it: today's batch need not
                # wait, tomorrow's partition is tried again with the next one.
                _LOGGER.info("partition for %s not made yet: the log is locked", day)
                continue
            self._partitions.add(name)

    async def _store(
        self,
        connection: psycopg.AsyncConnection[Any],
        batch: dict[Key, list[EventRow]],
        now: datetime,
        skip_locked: bool,
    ) -> _Outcome:
        """One batch in one transaction (see the module's docstring). Any failure rolls back
        before it is raised."""
        try:
            return await self._transaction(connection, batch, now, skip_locked)
        except BaseException:
            await _roll_back(connection)
            raise

    async def _transaction(
        self,
        connection: psycopg.AsyncConnection[Any],
        batch: dict[Key, list[EventRow]],
        now: datetime,
        skip_locked: bool,
    ) -> _Outcome:
        outcome = _Outcome()
        ledgers, fresh, conflicts = outcome.ledgers, outcome.fresh, outcome.conflicts
        await _roll_back(connection)  # nothing of an earlier batch may join this one
        if connection.closed:
            raise psycopg.OperationalError("the connection was closed by a failed rollback")
        async with connection.cursor() as cursor:
            await self._lock_ledgers(cursor, sorted(batch), ledgers, skip_locked)
            keys = sorted(ledgers)
            outcome.skipped = [key for key in batch if key not in ledgers]
            for key in keys:
                taken = ledgers[key].take(batch[key])
                fresh[key] = taken.fresh
                outcome.lost += taken.expired
                outcome.repeated += len(batch[key]) - len(taken.fresh) - len(taken.deferred)
                if taken.deferred:
                    outcome.deferred[key] = taken.deferred
                outcome.markers.extend((key, row) for row in taken.markers)
                if taken.repeated:
                    found = await self._conflicts(cursor, key, taken.repeated, taken.fresh)
                    if found:
                        conflicts[key] = found
            if any(fresh.values()):
                async with cursor.copy(COPY_EVENTS) as copy:
                    await copy.write(copy_text(fresh, now))
            await cursor.execute(
                WRITE_MARKS,
                (
                    now,
                    [k[0] for k in keys],
                    [k[1] for k in keys],
                    [k[2] for k in keys],
                    [ledgers[k].watermark for k in keys],
                    [orjson.dumps(ledgers[k].stored).decode() for k in keys],
                    [orjson.dumps(ledgers[k].expired).decode() for k in keys],
                ),
            )
            for key, found in conflicts.items():
                await cursor.execute(
                    RECORD_CONFLICTS,
                    (*key, now, *([c[n] for c in found] for n in range(3))),
                )
            await cursor.execute("COMMIT")  # past this line the batch is committed
        return outcome

    async def _lock_ledgers(
        self,
        cursor: psycopg.AsyncCursor[Any],
        keys: list[Key],
        ledgers: dict[Key, Ledger],
        skip_locked: bool,
    ) -> None:
        """Open the transaction, lock the ``hq_marks`` rows of ``keys`` and load their ledgers
        (prepared statements: psycopg prepares each after a few batches); rows for keys not
        seen before are made first (a key seen is never made again: no write per batch)."""
        missing = [key for key in keys if key not in self._known_keys]
        for attempt in range(2):  # a row deleted by hand since: made again
            if attempt == 0:
                await cursor.execute("BEGIN")
            if missing:
                await cursor.execute(NEW_MARKS, key_columns(missing))
            await cursor.execute(LOCK_FREE_MARKS if skip_locked else LOCK_MARKS, key_columns(keys))
            rows = await cursor.fetchall()
            for store, stream, epoch, watermark, stored, expired in rows:
                ledgers[(store, stream, epoch)] = Ledger(
                    int(watermark), [tuple(r) for r in stored], [tuple(r) for r in expired]
                )
            missing = [key for key in keys if key not in ledgers]
            if not missing or skip_locked:  # skipped: locked elsewhere, or made next time
                return
        raise StorageError(self.name, f"hq_marks rows for {missing[:3]} cannot be made")

    @staticmethod
    async def _conflicts(
        cursor: psycopg.AsyncCursor[Any], key: Key, repeated: list[EventRow], fresh: list[EventRow]
    ) -> list[tuple[int, str, str]]:
        """Repeated seqs whose id differs from the one held (stored before, or new in this
        batch): (seq, id, held id)."""
        await cursor.execute(HELD_IDS, (*key, [row.seq for row in repeated]))
        held = {int(seq): str(event_id) for seq, event_id in await cursor.fetchall()}
        held.update((row.seq, row.id) for row in fresh)
        return [
            (row.seq, row.id, held[row.seq])
            for row in repeated
            if row.seq in held and held[row.seq] != row.id
        ]

    def _note_conflicts(self, conflicts: dict[Key, list[tuple[int, str, str]]]) -> None:
        for key, found in conflicts.items():
            known = self.conflicts.setdefault(key, set())
            new = sorted({seq for seq, _, _ in found} - known)
            if not new:
                continue
            known.update(new)
            _LOGGER.warning(
                "conflict in %s/%s epoch %s: %d event(s) came with seqs HQ holds under other "
                "ids (seq %d..%d, %d in all): the store's database went back in time? They "
                "are not stored under those seqs (see hq_conflicts); a current store re-sends "
                "them under a new epoch",
                *key,
                len(new),
                new[0],
                new[-1],
                len(known),
            )


async def _roll_back(connection: psycopg.AsyncConnection[Any]) -> None:
    """End a failed batch's transaction, so the connection can take the next one; a
    connection that cannot is closed (the session makes a new one)."""
    if connection.closed or connection.info.transaction_status == TransactionStatus.IDLE:
        return
    try:
        await connection.execute("ROLLBACK")
    except psycopg.Error:
        await connection.close()
    except BaseException:  # cancelled: never leave a half batch on an open connection
        await connection.close()
        raise
