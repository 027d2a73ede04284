"""HQ's PostgreSQL schema: versioned migrations (like the gateway's, in ``hq_schema``), applied
at start under an advisory lock so consumers starting together migrate once; a database whose
schema is newer than this storegw is refused. Daily partitions of the event log are created
ahead of need, each in its own short transaction.

Idempotency cannot be a unique index on the time-partitioned log (such an index must include
the partition key). It is a per-key ledger instead: ``hq_marks`` holds, for each
``(store, stream, epoch)``, the contiguous watermark and the ranges stored or expired above it.
Every batch locks the rows of its keys (``FOR UPDATE`` through the upsert) before deciding what
is new, so concurrent consumers serialise per key, and the watermark they ack is the committed
one. Partitions are by ``received_at`` (HQ's clock, always sane) so retention is ``DROP TABLE``
of old days; a store re-sending an old event finds it under its watermark, not in the log.
A day's partition is made as a plain table, then attached (see :func:`ensure_partition`).

Append new migrations; never edit one that has shipped.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING

from gateway.errors import SchemaTooNewError
from gateway.store.migrations import Migration

if TYPE_CHECKING:
    from psycopg import AsyncConnection

__all__ = ["PG_MIGRATIONS", "ensure_partition", "migrate", "partition_name"]

# pg_advisory_xact_lock keys: any two constants of our own.
_MIGRATION_LOCK = 0x5354_4757_0001
_PARTITION_LOCK = 0x5354_4757_0002

PG_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "hq: event log partitioned by day, per-key custody ledger, conflicts, views",
        (
            """CREATE TABLE hq_event_log (
                store text NOT NULL, stream text NOT NULL, epoch text NOT NULL,
                seq bigint NOT NULL, id text NOT NULL, ts text NOT NULL, type text NOT NULL,
                event jsonb NOT NULL, received_at timestamptz NOT NULL
            ) PARTITION BY RANGE (received_at)""",
            # Not unique (it could not be: received_at is the partition key): the ledger in
            # hq_marks decides what is new. Used to compare the ids of repeated seqs.
            "CREATE INDEX hq_event_log_key ON hq_event_log (store, stream, epoch, seq)",
            # stored / expired: [[first, last], ...] accounted for above the watermark.
            """CREATE TABLE hq_marks (
                store text NOT NULL, stream text NOT NULL, epoch text NOT NULL,
                watermark bigint NOT NULL DEFAULT 0,
                stored jsonb NOT NULL DEFAULT '[]', expired jsonb NOT NULL DEFAULT '[]',
                updated_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (store, stream, epoch)
            )""",
            # A seq HQ holds that came again with another event id (the store's database went
            # back in time): kept for the operator; the held event stays.
            """CREATE TABLE hq_conflicts (
                store text NOT NULL, stream text NOT NULL, epoch text NOT NULL,
                seq bigint NOT NULL, id text NOT NULL, held_id text NOT NULL,
                seen_at timestamptz NOT NULL,
                PRIMARY KEY (store, stream, epoch, seq, id)
            )""",
            """CREATE VIEW hq_events AS
            SELECT store, stream, epoch, seq, id, ts, type, event, received_at
            FROM hq_event_log""",
            """CREATE VIEW hq_watermarks AS
            SELECT store, stream, epoch, watermark AS seq FROM hq_marks""",
            """CREATE VIEW hq_expired AS
            SELECT store, stream, epoch,
                CASE WHEN jsonb_typeof(event -> 'from_seq') = 'number'
                    THEN (event ->> 'from_seq')::numeric END AS from_seq,
                seq,
                CASE WHEN jsonb_typeof(event -> 'count') = 'number'
                    THEN (event ->> 'count')::numeric END AS count,
                event ->> 'oldest_ts' AS oldest_ts, event ->> 'newest_ts' AS newest_ts,
                received_at
            FROM hq_event_log WHERE type = 'outbox.expired'""",
        ),
    ),
)

PG_SCHEMA_VERSION = PG_MIGRATIONS[-1].version


async def migrate(connection: AsyncConnection[object], *, name: str) -> int:
    """Bring the schema to :data:`PG_SCHEMA_VERSION` (one transaction); returns the version
    found. Raises SchemaTooNewError for a schema a newer storegw wrote."""
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS hq_schema (version integer PRIMARY KEY, "
            "description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cursor = await connection.execute("SELECT coalesce(max(version), 0) FROM hq_schema")
        row = await cursor.fetchone()
        found = int(row[0]) if row is not None else 0  # type: ignore[index]
        if found > PG_SCHEMA_VERSION:
            raise SchemaTooNewError(name, found, PG_SCHEMA_VERSION)
        for migration in PG_MIGRATIONS:
            if migration.version <= found:
                continue
            for statement in migration.statements:
                await connection.execute(statement)
            await connection.execute(
                "INSERT INTO hq_schema (version, description) VALUES (%s, %s)",
                (migration.version, migration.description),
            )
    return found


def partition_name(day: date) -> str:
    return f"hq_event_log_{day:%Y%m%d}"


async def ensure_partition(
    connection: AsyncConnection[object], day: date, *, lock_wait: str = "10s"
) -> None:
    """Make the event log's partition for ``day`` (UTC) unless it exists. Its own short
    transaction, never holding a batch's row locks.

    Made as a table of its own, then attached: ``ATTACH PARTITION`` takes the log's SHARE
    UPDATE EXCLUSIVE lock, which neither readers nor writers hold against it, where ``CREATE
    TABLE … PARTITION OF`` wants the log exclusively — it would wait for every report with a
    transaction open on ``hq_events``, and every consumer's batch would queue behind it. Gives
    up with LockNotAvailable after ``lock_wait`` (DDL on the log, or ANALYZE, holding it)."""
    name = partition_name(day)
    following = day + timedelta(days=1)
    async with connection.transaction():
        await connection.execute("SELECT set_config('lock_timeout', %s, true)", (lock_wait,))
        await connection.execute("SELECT pg_advisory_xact_lock(%s)", (_PARTITION_LOCK,))
        cursor = await connection.execute(
            "SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass(%s)", (name,)
        )
        if await cursor.fetchone() is not None:
            return
        await connection.execute(f"CREATE TABLE IF NOT EXISTS {name} (LIKE hq_event_log)")
        await connection.execute(
            f"ALTER TABLE hq_event_log ATTACH PARTITION {name} FOR VALUES "
            f"FROM ('{day.isoformat()} 00:00+00') TO ('{following.isoformat()} 00:00+00')"
        )
