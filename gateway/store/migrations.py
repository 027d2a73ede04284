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
    Migration(
        4,
        "outbox: byte accounting by running offsets, so the budget costs no scan",
        (
            # end_offset: bytes appended to the stream up to and including this row. With
            # deletes only ever removing a prefix of a stream, its buffered bytes are
            # appended_bytes - (end_offset - size) of its first row: an index lookup.
            "ALTER TABLE outbox_streams ADD COLUMN appended_bytes INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE outbox ADD COLUMN end_offset INTEGER NOT NULL DEFAULT 0",
            """UPDATE outbox SET end_offset = running.total FROM (
                SELECT stream, seq, sum(size) OVER (PARTITION BY stream ORDER BY seq) AS total
                FROM outbox
            ) AS running WHERE running.stream = outbox.stream AND running.seq = outbox.seq""",
            """UPDATE outbox_streams SET appended_bytes = coalesce(
                (SELECT max(end_offset) FROM outbox WHERE outbox.stream = outbox_streams.stream),
                0)""",
            "DROP TRIGGER outbox_next_seq",
            """CREATE TRIGGER outbox_next_seq AFTER INSERT ON outbox BEGIN
                UPDATE outbox_streams SET next_seq = NEW.seq + 1, appended_bytes = NEW.end_offset
                WHERE stream = NEW.stream;
            END""",
        ),
    ),
    Migration(
        5,
        "prices: downlink parts, version log, price book with history, promotions",
        (
            # Verified parts of price batches, committed before the broker gets its ack.
            """CREATE TABLE price_parts (
                version INTEGER NOT NULL,
                part INTEGER NOT NULL,
                parts INTEGER NOT NULL,
                kind TEXT NOT NULL,
                payload BLOB NOT NULL,
                received_at TEXT NOT NULL,
                PRIMARY KEY (version, part)
            ) STRICT""",
            # Every version seen and what became of it (applied, rejected, superseded, expired).
            """CREATE TABLE price_versions (
                version INTEGER PRIMARY KEY,
                kind TEXT NOT NULL,
                state TEXT NOT NULL,
                items INTEGER NOT NULL DEFAULT 0,
                detail TEXT NOT NULL DEFAULT '',
                received_at TEXT NOT NULL,
                decided_at TEXT
            ) STRICT""",
            """CREATE TABLE price_book (
                sku TEXT PRIMARY KEY,
                price TEXT NOT NULL,
                currency TEXT NOT NULL,
                unit_price TEXT,
                unit TEXT,
                name TEXT,
                reference_price TEXT,
                version INTEGER NOT NULL,
                updated_at TEXT NOT NULL
            ) STRICT""",
            """CREATE TABLE price_history (
                sku TEXT NOT NULL,
                version INTEGER NOT NULL,
                change TEXT NOT NULL,
                price TEXT,
                currency TEXT,
                reference_price TEXT,
                at TEXT NOT NULL,
                PRIMARY KEY (sku, version)
            ) STRICT""",
            "CREATE INDEX price_history_at ON price_history (at)",
            """CREATE TABLE promotions (
                id TEXT PRIMARY KEY,
                sku TEXT NOT NULL,
                price TEXT NOT NULL,
                currency TEXT NOT NULL,
                reference_price TEXT,
                effective_from TEXT NOT NULL,
                effective_to TEXT NOT NULL,
                version INTEGER NOT NULL,
                cancelled_version INTEGER
            ) STRICT""",
            "CREATE INDEX promotions_sku ON promotions (sku, effective_from)",
        ),
    ),
    Migration(
        6,
        "commands: executed command ids with their replies (exactly once)",
        (
            """CREATE TABLE commands_done (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                reply TEXT NOT NULL,
                executed_at TEXT NOT NULL
            ) STRICT""",
            "CREATE INDEX commands_done_at ON commands_done (executed_at)",
        ),
    ),
    Migration(
        7,
        "labels: label -> SKU bindings with their source (HQ wins unless locally overridden)",
        (
            """CREATE TABLE label_bindings (
                label TEXT PRIMARY KEY,
                sku TEXT NOT NULL,
                source TEXT NOT NULL,
                local_override INTEGER NOT NULL DEFAULT 0,
                updated_at TEXT NOT NULL
            ) STRICT""",
            "CREATE INDEX label_bindings_sku ON label_bindings (sku)",
        ),
    ),
    Migration(
        8,
        "outbox: events stored in batches, one row per committed append",
        (
            # A row holds consecutive events of one stream: seq_from..seq_to, their JSON objects
            # (without seq, which is seq_from + position) one per line. The seqs are still taken
            # inside the committing transaction. A marker row (outbox.expired) is one event
            # with seq = seq_to that stands for the seqs seq_from..seq_to.
            """CREATE TABLE outbox_batches (
                stream TEXT NOT NULL REFERENCES outbox_streams(stream),
                seq_from INTEGER NOT NULL,
                seq_to INTEGER NOT NULL,
                count INTEGER NOT NULL,
                oldest_ts TEXT NOT NULL,
                newest_ts TEXT NOT NULL,
                marker INTEGER NOT NULL DEFAULT 0,
                size INTEGER NOT NULL,
                end_offset INTEGER NOT NULL,
                events TEXT NOT NULL
            ) STRICT""",
            # Covering: reads pick rows, releases and the byte accounting find offsets, all
            # without touching the events text.
            """CREATE INDEX outbox_batches_seq ON outbox_batches
                (stream, seq_to, seq_from, count, size, end_offset, marker)""",
            """INSERT INTO outbox_batches
                (stream, seq_from, seq_to, count, oldest_ts, newest_ts, marker, size,
                 end_offset, events)
            SELECT stream,
                CASE WHEN type = 'outbox.expired' THEN body ->> '$.from_seq' ELSE seq END,
                seq,
                CASE WHEN type = 'outbox.expired' THEN body ->> '$.count' ELSE 1 END,
                CASE WHEN type = 'outbox.expired' THEN body ->> '$.oldest_ts' ELSE ts END,
                ts, type = 'outbox.expired', size, end_offset,
                '{"id":' || json_quote(id) || ',"ts":' || json_quote(ts)
                    || ',"type":' || json_quote(type)
                    || CASE WHEN body = '{}' THEN '}' ELSE ',' || substr(body, 2) END
            FROM outbox ORDER BY stream, seq""",
            "DROP TRIGGER outbox_next_seq",
            "DROP TABLE outbox",
            """CREATE TRIGGER outbox_next_seq AFTER INSERT ON outbox_batches BEGIN
                UPDATE outbox_streams SET next_seq = NEW.seq_to + 1,
                    appended_bytes = NEW.end_offset
                WHERE stream = NEW.stream;
            END""",
        ),
    ),
    Migration(
        9,
        "labels: durable per-label jobs, scheduled flips, what labels show, append-only audit",
        (
            # One row per label: the latest content it should show and how far its delivery
            # got. New content replaces the row (the old content is audited as superseded).
            # rev counts contents, so a render or push finishing late never lands on newer
            # content. order_at: due_at, else queued_at (dispatch order after flips).
            """CREATE TABLE label_jobs (
                label TEXT PRIMARY KEY,
                sku TEXT NOT NULL,
                face TEXT NOT NULL,
                price_version INTEGER NOT NULL,
                rev INTEGER NOT NULL DEFAULT 1,
                model TEXT,
                content_hash TEXT,
                due_at TEXT,
                order_at TEXT NOT NULL,
                scheduled INTEGER NOT NULL DEFAULT 0,
                state TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at TEXT,
                device TEXT,
                queued_at TEXT NOT NULL,
                submitted_at TEXT,
                confirmed_at TEXT,
                last_error TEXT,
                evidence TEXT
            ) STRICT""",
            (
                "CREATE INDEX label_jobs_render ON label_jobs (scheduled DESC, order_at, sku) "
                "WHERE content_hash IS NULL AND state = 'queued'"
            ),
            (
                "CREATE INDEX label_jobs_ready ON label_jobs (scheduled DESC, order_at) "
                "WHERE content_hash IS NOT NULL AND state IN ('queued', 'failed')"
            ),
            "CREATE INDEX label_jobs_state ON label_jobs (state, order_at)",
            # Contents that become correct at a future instant (promotion start or end),
            # pre-rendered while the current content stays in force; promoted into
            # label_jobs at due_at. valid_to: when that content stops being correct.
            """CREATE TABLE label_schedule (
                label TEXT NOT NULL,
                due_at TEXT NOT NULL,
                sku TEXT NOT NULL,
                face TEXT NOT NULL,
                price_version INTEGER NOT NULL,
                valid_to TEXT,
                model TEXT,
                content_hash TEXT,
                planned_at TEXT NOT NULL,
                PRIMARY KEY (label, due_at)
            ) STRICT, WITHOUT ROWID""",
            # Rendered images by content hash: labels sharing a face share one image, and a
            # flip promotes hashes, never copies images. Unreferenced ones are collected.
            """CREATE TABLE label_images (
                content_hash TEXT PRIMARY KEY,
                png BLOB NOT NULL,
                created_at TEXT NOT NULL
            ) STRICT""",
            # What each label's driver last reported it shows, and who reaches it.
            """CREATE TABLE label_shown (
                label TEXT PRIMARY KEY,
                content_hash TEXT,
                evidence TEXT NOT NULL DEFAULT '',
                at TEXT NOT NULL,
                device TEXT,
                model TEXT
            ) STRICT, WITHOUT ROWID""",
            # Scratch space of one planning transaction (always empty between them). Few
            # indexes on purpose: each costs pages on the smallest boxes; the schedule and
            # the plan are small, audit pruning is hourly.
            """CREATE TABLE label_plan (
                label TEXT PRIMARY KEY,
                sku TEXT NOT NULL,
                face TEXT NOT NULL,
                price_version INTEGER NOT NULL,
                valid_to TEXT
            ) STRICT, WITHOUT ROWID""",
            # Append-only proof: every job event, forwarded to the receipts stream in id
            # order (meta label_audit_forwarded), pruned only once forwarded and old.
            """CREATE TABLE label_audit (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                at TEXT NOT NULL,
                label TEXT NOT NULL,
                event TEXT NOT NULL,
                state TEXT NOT NULL,
                sku TEXT,
                price_version INTEGER,
                content_hash TEXT,
                detail TEXT NOT NULL DEFAULT ''
            ) STRICT""",
            "CREATE INDEX label_audit_label ON label_audit (label, id)",
        ),
    ),
    Migration(
        10,
        "shelves: effective slot configuration with its source; software tare and calibration",
        (
            # source: 'config' (the file; HQ may change it), 'local' (the file with
            # override = true; HQ may not) or 'hq' (a signed `slots` command). config: the
            # slot's fields as JSON (gateway.config.SlotConfig).
            """CREATE TABLE slots (
                slot TEXT PRIMARY KEY,
                config TEXT NOT NULL,
                source TEXT NOT NULL,
                updated_at TEXT NOT NULL
            ) STRICT""",
            # A technician's values: tare (the reading with the empty tray; NULL = the
            # configured tray_tare_grams) and gain (grams per reading unit).
            """CREATE TABLE slot_calibration (
                slot TEXT PRIMARY KEY,
                tare_grams REAL,
                gain REAL NOT NULL DEFAULT 1.0,
                updated_at TEXT NOT NULL
            ) STRICT""",
        ),
    ),
    Migration(
        11,
        "outbox: an epoch per stream, for a stream that restarts its seqs",
        (
            # NULL: the database's epoch (meta). A stream whose database went back in time
            # (restored from a copy) gets a new one and its buffered events new seqs from 1.
            "ALTER TABLE outbox_streams ADD COLUMN epoch TEXT",
        ),
    ),
    Migration(
        12,
        "prices: promotions as applied (every revision, and when it stopped early), the "
        "progressive flag, and each promotion's EU prior price",
        (
            # progressive: HQ says the promotion deepens the reduction in force right before
            # it (its prior price is then that reduction's). prior_price: the lowest price
            # applied in the 30 days before reduction_from, when the reduction began (NULL
            # reduction_from: not worked out yet; see gateway/prices/book.py).
            "ALTER TABLE promotions ADD COLUMN progressive INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE promotions ADD COLUMN prior_price TEXT",
            "ALTER TABLE promotions ADD COLUMN reduction_from TEXT",
            # Every revision of a promotion as sent (a promotion sent again is a new one),
            # applied from max(effective_from, applied_at) until effective_to, or until
            # ended_at when a later revision or a cancellation replaced it earlier.
            """CREATE TABLE promotion_history (
                id TEXT NOT NULL,
                version INTEGER NOT NULL,
                sku TEXT NOT NULL,
                price TEXT NOT NULL,
                currency TEXT NOT NULL,
                effective_from TEXT NOT NULL,
                effective_to TEXT NOT NULL,
                progressive INTEGER NOT NULL,
                applied_at TEXT NOT NULL,
                ended_at TEXT,
                PRIMARY KEY (id, version)
            ) STRICT""",
            "CREATE INDEX promotion_history_sku ON promotion_history (sku)",
            # The promotions kept so far, applied from when their version was (or else from
            # their start); a cancelled one until its cancellation was applied (or never).
            """INSERT INTO promotion_history (id, version, sku, price, currency, effective_from,
                effective_to, progressive, applied_at, ended_at)
            SELECT p.id, p.version, p.sku, p.price, p.currency, p.effective_from,
                p.effective_to, 0,
                coalesce((SELECT decided_at FROM price_versions v WHERE v.version = p.version),
                    p.effective_from),
                CASE WHEN p.cancelled_version IS NOT NULL THEN coalesce((SELECT decided_at
                    FROM price_versions v WHERE v.version = p.cancelled_version),
                    p.effective_from) END
            FROM promotions p""",
        ),
    ),
    Migration(
        13,
        "prices: a promotion's own unit price, as HQ computed it",
        (
            # NULL: derived from the regular price and unit price (gateway/prices/unit_price).
            "ALTER TABLE promotions ADD COLUMN unit_price TEXT",
        ),
    ),
    Migration(
        14,
        "presence: store tags and identity keys HQ enrolled (the signed `enrol` command)",
        (
            """CREATE TABLE presence_enrolment (
                name TEXT PRIMARY KEY,
                kind TEXT NOT NULL CHECK (kind IN ('tag', 'key')),
                value TEXT NOT NULL,
                updated_at TEXT NOT NULL
            ) STRICT""",
        ),
    ),
    Migration(
        15,
        "labels: flip windows with shortened check-ins, and what puts each back after it",
        (
            # One open window per ESL device: until when its labels' check-ins stay short,
            # and the restore token its driver returned (JSON; NULL: the driver keeps it).
            """CREATE TABLE label_flip_windows (
                device TEXT PRIMARY KEY,
                window_end TEXT NOT NULL,
                token TEXT,
                opened_at TEXT NOT NULL
            ) STRICT""",
        ),
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1].version
