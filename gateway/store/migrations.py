"""Versioned schema migrations, tracked in ``PRAGMA user_version``.

Append new migrations; never edit one that has shipped. Each runs in its own transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Migration"]


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "meta: database identity (epoch), creation time, boot counter",
        ("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT",),
    ),
    Migration(
        2,
        "outbox: durable per-stream event queue with gapless sequence numbers",
        (
            # next_seq: the seq the next accepted event gets; sent_seq: highest PUBACKed;
            # acked_seq: HQ's custody watermark (rows at or below it are deleted).
            """CREATE TABLE outbox_streams (
                stream TEXT PRIMARY KEY,
                next_seq INTEGER NOT NULL DEFAULT 1,
                sent_seq INTEGER NOT NULL DEFAULT 0,
                acked_seq INTEGER NOT NULL DEFAULT 0,
                acked_at TEXT
            ) STRICT""",
            """CREATE TABLE outbox (
                stream TEXT NOT NULL REFERENCES outbox_streams(stream),
                seq INTEGER NOT NULL,
                id TEXT NOT NULL,
                ts TEXT NOT NULL,
                type TEXT NOT NULL,
                body TEXT NOT NULL,
                size INTEGER NOT NULL,
                PRIMARY KEY (stream, seq)
            ) STRICT, WITHOUT ROWID""",
            # The seq is taken inside the committing transaction, so a rolled-back batch
            # (disk full) leaves no gap that HQ's contiguous watermark would wait on forever.
            """CREATE TRIGGER outbox_next_seq AFTER INSERT ON outbox BEGIN
                UPDATE outbox_streams SET next_seq = NEW.seq + 1 WHERE stream = NEW.stream;
            END""",
        ),
    ),
    Migration(
        3,
        "alerts: the active alerts, so de-duplication survives restarts",
        (
            """CREATE TABLE alerts_active (
                key TEXT PRIMARY KEY,
                severity TEXT NOT NULL,
                message TEXT NOT NULL,
                details TEXT NOT NULL,
                raised_at TEXT NOT NULL,
                updated_at TEXT NOT NULL
            ) STRICT""",
        ),
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1].version
