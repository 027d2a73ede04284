"""What the PostgreSQL sink sends: its statements (the ledger rows locked, read and written
back; conflicts; the COPY of new events) and the COPY text of a batch's new events."""

from __future__ import annotations

from datetime import datetime

from gateway.hq.intake import EventRow, Key

__all__ = [
    "COPY_EVENTS",
    "HELD_IDS",
    "LOCK_FREE_MARKS",
    "LOCK_MARKS",
    "NEW_MARKS",
    "RECORD_CONFLICTS",
    "WRITE_MARKS",
    "copy_text",
    "key_columns",
]

NEW_MARKS = """
INSERT INTO hq_marks (store, stream, epoch)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[])
ON CONFLICT (store, stream, epoch) DO NOTHING"""

# Locked in key order (LockRows runs above the sort), so consumers never wait in a cycle.
LOCK_MARKS = """
SELECT m.store, m.stream, m.epoch, m.watermark, m.stored, m.expired
FROM hq_marks m JOIN unnest(%s::text[], %s::text[], %s::text[]) AS k (store, stream, epoch)
    ON m.store = k.store AND m.stream = k.stream AND m.epoch = k.epoch
ORDER BY m.store, m.stream, m.epoch
FOR UPDATE OF m"""

# The rows no other transaction holds: a consumer sharing the load stores those keys at once
# instead of waiting behind another consumer's batch (mosquitto's $share round-robins a store's
# messages over the consumers, so their batches share most keys).
LOCK_FREE_MARKS = LOCK_MARKS + " SKIP LOCKED"

WRITE_MARKS = """
UPDATE hq_marks AS m SET watermark = u.watermark, stored = u.stored, expired = u.expired,
    updated_at = %s
FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::jsonb[], %s::jsonb[])
    AS u (store, stream, epoch, watermark, stored, expired)
WHERE m.store = u.store AND m.stream = u.stream AND m.epoch = u.epoch"""

HELD_IDS = """
SELECT seq, id FROM hq_event_log
WHERE store = %s AND stream = %s AND epoch = %s AND seq = ANY(%s)"""

RECORD_CONFLICTS = """
INSERT INTO hq_conflicts (store, stream, epoch, seq, id, held_id, seen_at)
SELECT %s, %s, %s, u.*, %s FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS u
ON CONFLICT DO NOTHING"""

COPY_EVENTS = (
    "COPY hq_event_log (store, stream, epoch, seq, id, ts, type, event, received_at) FROM STDIN"
)


def _escaped(text: str) -> str:
    """``text`` as a field of COPY's text format."""
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    if "\t" in text or "\n" in text or "\r" in text:
        text = text.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text


def copy_text(fresh: dict[Key, list[EventRow]], now: datetime) -> bytes:
    """The new events as COPY text lines (psycopg's write_row costs 3x more per row)."""
    received = now.isoformat()
    lines: list[str] = []
    for key, rows in fresh.items():
        head = "\t".join(_escaped(part) for part in key)
        lines.extend(
            f"{head}\t{row.seq}\t{_escaped(row.id)}\t{_escaped(row.ts)}\t{_escaped(row.type)}"
            f"\t{_escaped(row.event)}\t{received}\n"
            for row in rows
        )
    return "".join(lines).encode()


def key_columns(keys: list[Key]) -> tuple[list[str], list[str], list[str]]:
    return [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]
