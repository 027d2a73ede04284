"""The outbox: every event promised to HQ, durable until HQ takes custody of it.

Events are appended to named streams (``stock``, ``dwell``, ``receipts``, ``alerts``…). Each
gets a per-stream, gapless, 64-bit ``seq`` assigned inside the committing transaction, a random
``id`` and its timestamp. Producers learn an event is accepted only after the group commit
holding it. Rows move through three marks kept per stream::

    appended ──PUBACK──▶ sent (sent_seq) ──HQ watermark on down/ack──▶ deleted (acked_seq)

Rows at or below the watermark are deleted; sent-but-unacknowledged rows are re-read from the
watermark after a reconnect (HQ de-duplicates on store, stream, epoch, seq).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.clock import Clock, event_stamp
from gateway.store.database import Database

__all__ = ["STREAM_NAME_PATTERN", "Outbox", "OutboxEvent", "StreamState"]

STREAM_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"

_ENCODE = json.JSONEncoder(separators=(",", ":"), default=str, check_circular=False).encode

_INSERT = (
    "INSERT INTO outbox (stream, seq, id, ts, type, body, size) "
    "VALUES (?1, (SELECT next_seq FROM outbox_streams WHERE stream = ?1), ?2, ?3, ?4, ?5, ?6)"
)


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """One buffered event as it goes on the wire (``body`` is its JSON object text)."""

    stream: str
    seq: int
    id: str
    ts: str
    type: str
    body: str
    size: int

    def wire(self) -> dict[str, Any]:
        event: dict[str, Any] = json.loads(self.body)
        return {"seq": self.seq, "id": self.id, "ts": self.ts, "type": self.type, **event}


@dataclass(frozen=True, slots=True)
class StreamState:
    stream: str
    next_seq: int
    sent_seq: int
    acked_seq: int
    acked_at: str | None
    depth: int
    bytes: int
    oldest_ts: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "next_seq": self.next_seq,
            "sent_seq": self.sent_seq,
            "acked_seq": self.acked_seq,
            "acked_at": self.acked_at,
            "depth": self.depth,
            "bytes": self.bytes,
            "oldest_ts": self.oldest_ts,
        }


class Outbox:
    """Append, read for sending, mark sent, and release on HQ's watermark."""

    def __init__(self, database: Database, clock: Clock) -> None:
        self._db = database
        self._clock = clock
        self._known_streams: set[str] = set()
        self.appended = asyncio.Event()  # set after a commit that added events
        self._appended_streams: set[str] = set()

    @property
    def epoch(self) -> str:
        return self._db.epoch

    async def open(self, streams: tuple[str, ...] = ()) -> None:
        """Make sure ``streams`` exist; loads the ones already in the database."""
        rows = await self._db.fetchall("SELECT stream FROM outbox_streams")
        self._known_streams = {str(row["stream"]) for row in rows}
        missing = [(name,) for name in streams if name not in self._known_streams]
        if missing:
            await self._db.write_many(
                "INSERT OR IGNORE INTO outbox_streams (stream) VALUES (?)", missing
            )
            self._known_streams.update(name for (name,) in missing)

    def append(self, stream: str, event_type: str, body: Mapping[str, Any]) -> asyncio.Future[None]:
        """Queue one event; the future resolves once it is committed (accepted)."""
        return self.append_many(stream, event_type, (body,))

    def append_many(
        self, stream: str, event_type: str, bodies: Iterable[Mapping[str, Any]]
    ) -> asyncio.Future[None]:
        """Queue events of one type as one write: a single future for all of them, resolved
        when the transaction holding them committed (all accepted or none)."""
        if stream not in self._known_streams:
            raise KeyError(f"unknown outbox stream {stream!r}")
        stamp = event_stamp(self._clock)
        ts = str(stamp["ts"])
        unsynced = "unsynced" in stamp
        rows = []
        for body in bodies:
            fields = {**body, "unsynced": True} if unsynced else body
            text = _ENCODE(fields)
            event_id = secrets.token_hex(8)
            rows.append((stream, event_id, ts, event_type, text, len(text) + 80))
        future = self._db.submit_many(_INSERT, rows)
        future.add_done_callback(lambda done: self._on_committed(stream, done))
        return future

    def _on_committed(self, stream: str, future: asyncio.Future[None]) -> None:
        if not future.cancelled() and future.exception() is None:
            self._appended_streams.add(stream)
            self.appended.set()

    def take_appended_streams(self) -> set[str]:
        """Streams that got events since the last call (the sender's cue to read them)."""
        streams, self._appended_streams = self._appended_streams, set()
        return streams

    @property
    def streams(self) -> tuple[str, ...]:
        return tuple(sorted(self._known_streams))

    async def read(
        self, stream: str, *, after_seq: int, max_events: int, max_bytes: int
    ) -> list[OutboxEvent]:
        """Events of ``stream`` with seq > ``after_seq`` in order, within both limits (always
        at least one event when any is there, so an oversized event cannot block a stream)."""
        rows = await self._db.fetchall(
            "SELECT stream, seq, id, ts, type, body, size FROM outbox "
            "WHERE stream = ? AND seq > ? ORDER BY seq LIMIT ?",
            (stream, after_seq, max_events),
        )
        events: list[OutboxEvent] = []
        total = 0
        for row in rows:
            size = int(row["size"])
            if events and total + size > max_bytes:
                break
            total += size
            events.append(
                OutboxEvent(
                    str(row["stream"]),
                    int(row["seq"]),
                    str(row["id"]),
                    str(row["ts"]),
                    str(row["type"]),
                    str(row["body"]),
                    size,
                )
            )
        return events

    def mark_sent(self, stream: str, seq: int) -> asyncio.Future[None]:
        """The broker PUBACKed everything of ``stream`` up to ``seq`` (resolves on commit)."""
        return self._db.submit(
            "UPDATE outbox_streams SET sent_seq = max(sent_seq, ?) WHERE stream = ?",
            (seq, stream),
        )

    async def acknowledge(self, stream: str, epoch: str, seq: int) -> asyncio.Future[Any] | None:
        """HQ durably holds ``stream`` up to ``seq``: release those rows.

        Returns the future of the release (resolved on commit) without waiting for it — losing
        an ack to a crash only means re-sending rows HQ will de-duplicate. An ack for another
        epoch (a previous database), an unknown stream or a seq never appended answers None.
        """
        if epoch != self.epoch or stream not in self._known_streams or seq < 0:
            return None
        state = await self._db.fetchone(
            "SELECT next_seq FROM outbox_streams WHERE stream = ?", (stream,)
        )
        if state is None or seq >= int(state["next_seq"]):
            return None
        now = self._clock.utc_now().isoformat()
        return asyncio.gather(
            self._db.submit(
                "UPDATE outbox_streams SET acked_seq = max(acked_seq, ?), "
                "sent_seq = max(sent_seq, ?), acked_at = ? WHERE stream = ?",
                (seq, seq, now, stream),
            ),
            self._db.submit("DELETE FROM outbox WHERE stream = ? AND seq <= ?", (stream, seq)),
        )

    def release_sent(self, stream: str, seq: int) -> asyncio.Future[Any]:
        """``custody = "broker"``: the PUBACK is the end of the line; delete up to ``seq``."""
        return asyncio.gather(
            self._db.submit(
                "UPDATE outbox_streams SET sent_seq = max(sent_seq, ?), "
                "acked_seq = max(acked_seq, ?) WHERE stream = ?",
                (seq, seq, stream),
            ),
            self._db.submit("DELETE FROM outbox WHERE stream = ? AND seq <= ?", (stream, seq)),
        )

    async def states(self) -> tuple[StreamState, ...]:
        rows = await self._db.fetchall(
            "SELECT s.stream, s.next_seq, s.sent_seq, s.acked_seq, s.acked_at, "
            "count(o.seq) AS depth, coalesce(sum(o.size), 0) AS bytes, min(o.ts) AS oldest "
            "FROM outbox_streams s LEFT JOIN outbox o ON o.stream = s.stream "
            "GROUP BY s.stream ORDER BY s.stream"
        )
        return tuple(
            StreamState(
                stream=str(row["stream"]),
                next_seq=int(row["next_seq"]),
                sent_seq=int(row["sent_seq"]),
                acked_seq=int(row["acked_seq"]),
                acked_at=row["acked_at"],
                depth=int(row["depth"]),
                bytes=int(row["bytes"]),
                oldest_ts=row["oldest"],
            )
            for row in rows
        )
