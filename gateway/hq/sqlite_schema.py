"""HQ's SQLite schema (the embedded default of ``storegw hq tail``): the gateway's meta table,
then HQ's own tables. Versioned like the gateway's (gateway/store/migrations.py)."""

from __future__ import annotations

from gateway.store.migrations import MIGRATIONS, Migration

__all__ = ["HQ_MIGRATIONS"]

HQ_MIGRATIONS: tuple[Migration, ...] = (
    MIGRATIONS[0],  # meta: epoch, boot
    Migration(
        2,
        "hq: events received from stores, and custody watermarks",
        (
            """CREATE TABLE hq_events (
                store TEXT NOT NULL, stream TEXT NOT NULL, epoch TEXT NOT NULL,
                seq INTEGER NOT NULL, id TEXT NOT NULL, ts TEXT NOT NULL, type TEXT NOT NULL,
                event TEXT NOT NULL, received_at TEXT NOT NULL,
                PRIMARY KEY (store, stream, epoch, seq)
            ) STRICT, WITHOUT ROWID""",
            """CREATE TABLE hq_watermarks (
                store TEXT NOT NULL, stream TEXT NOT NULL, epoch TEXT NOT NULL,
                seq INTEGER NOT NULL,
                PRIMARY KEY (store, stream, epoch)
            ) STRICT""",
        ),
    ),
    Migration(
        3,
        "hq: the last price batch version pushed to each store",
        (
            """CREATE TABLE hq_price_versions (
                store TEXT PRIMARY KEY, version INTEGER NOT NULL, pushed_at TEXT NOT NULL
            ) STRICT""",
        ),
    ),
    Migration(
        4,
        "hq: events stored as received, one row per envelope; hq_events becomes a view",
        (
            # ``payload`` is a JSON object whose ``events`` array holds seq_from..seq_to (the
            # envelope as it came, or only its new events when some were held already).
            """CREATE TABLE hq_batches (
                store TEXT NOT NULL, stream TEXT NOT NULL, epoch TEXT NOT NULL,
                seq_from INTEGER NOT NULL, seq_to INTEGER NOT NULL,
                received_at TEXT NOT NULL, payload TEXT NOT NULL,
                PRIMARY KEY (store, stream, epoch, seq_to)
            ) STRICT""",
            """INSERT INTO hq_batches
            SELECT store, stream, epoch, seq, seq, received_at, json_object('events',
                json_array(json(event))) FROM hq_events""",
            "DROP TABLE hq_events",
            """CREATE VIEW hq_events AS
            SELECT b.store, b.stream, b.epoch, e.value ->> '$.seq' AS seq,
                e.value ->> '$.id' AS id, e.value ->> '$.ts' AS ts, e.value ->> '$.type' AS type,
                e.value AS event, b.received_at
            FROM hq_batches b, json_each(b.payload, '$.events') e""",
        ),
    ),
)
