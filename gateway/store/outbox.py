"""The outbox: every event promised to HQ, durable until HQ takes custody of it.

Events are appended to named streams (``stock``, ``dwell``, ``receipts``, ``alerts``…). Each
gets a per-stream, gapless, 64-bit ``seq`` assigned inside the committing transaction, a random
``id`` and its timestamp. Producers learn an event is accepted only after the group commit
holding it. Rows move through three marks kept per stream::

    appended ──PUBACK──▶ sent (sent_seq) ──HQ watermark on down/ack──▶ deleted (acked_seq)

Rows at or below the watermark are deleted; sent-but-unacknowledged rows are re-read from the
watermark after a reconnect (HQ de-duplicates on store, stream, epoch, seq).

The outbox holds a byte budget (:mod:`gateway.store.budget`): under pressure lossy classes are
shed first, essential events are refused only at the budget less the alert reserve. A stream's
TTL replaces its expired prefix by one ``outbox.expired`` marker that takes the last expired seq
and says which seqs it stands for, so HQ's contiguous watermark can pass them. Deletes only ever
remove a prefix of a stream, which keeps the byte accounting an index lookup (migration 4).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from gateway.clock import Clock, event_stamp, isoformat_utc
from gateway.errors import OutboxFullError
from gateway.store.budget import Admission, BufferBudget, BufferPressure, Shed, default_shed
from gateway.store.database import Database

__all__ = [
    "EXPIRED_TYPE",
    "STREAM_NAME_PATTERN",
    "Outbox",
    "OutboxEvent",
    "StreamState",
    "WireBatch",
]

#: Type of the marker event standing for events a stream's TTL expired (docs/protocol.md).
EXPIRED_TYPE = "outbox.expired"

STREAM_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"

_ENCODE = json.JSONEncoder(separators=(",", ":"), default=str, check_circular=False).encode

_LOGGER = logging.getLogger(__name__)

_ROW_OVERHEAD = 80  # bytes a row costs beyond its JSON body (key, id, ts, type, index)

# Two scalar subselects measure ~25 % faster than INSERT ... SELECT FROM outbox_streams.
_INSERT = (
    "INSERT INTO outbox (stream, seq, id, ts, type, body, size, end_offset) VALUES ("
    "?1, (SELECT next_seq FROM outbox_streams WHERE stream = ?1), ?2, ?3, ?4, ?5, ?6, "
    "(SELECT appended_bytes FROM outbox_streams WHERE stream = ?1) + ?6)"
)

# The next events of a stream as they go on the wire, built by SQLite: each row's JSON object
# is its header fields spliced in front of its stored body, so sending costs no per-event
# Python work beyond joining strings. ``running`` caps the batch by bytes (the first event is
# always taken, so an oversized event cannot block its stream).
_READ_WIRE = """
SELECT seq, wire FROM (
    SELECT seq,
        '{"seq":' || seq || ',"id":' || json_quote(id) || ',"ts":' || json_quote(ts)
            || ',"type":' || json_quote(type)
            || CASE WHEN body = '{}' THEN '}' ELSE ',' || substr(body, 2) END AS wire,
        sum(size) OVER (ORDER BY seq ROWS UNBOUNDED PRECEDING) AS running,
        row_number() OVER (ORDER BY seq) AS position
    FROM (SELECT seq, id, ts, type, body, size FROM outbox
          WHERE stream = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3)
) WHERE running <= ?4 OR position = 1 ORDER BY seq
"""

# Per stream: marks, and the first buffered row (depth, bytes and age without a scan).
_STATES = (
    "SELECT s.stream, s.next_seq, s.sent_seq, s.acked_seq, s.acked_at, s.appended_bytes, "
    "f.seq AS first_seq, f.ts AS oldest, f.end_offset - f.size AS base "
    "FROM outbox_streams s LEFT JOIN outbox f ON f.stream = s.stream "
    "AND f.seq = (SELECT min(seq) FROM outbox WHERE stream = s.stream) ORDER BY s.stream"
)

# Turns row ?2 into the marker for every row of stream ?1 up to it (an earlier marker among
# them is folded in); the rows before it are deleted next. Update first, delete second: a crash
# in between leaves a marker overlapping rows still there, which HQ takes as it comes.
# Parameters: ?1 stream, ?2 last expired seq, ?3 marker id, ?4 EXPIRED_TYPE, ?5 row overhead.
_MARK_EXPIRED = """
UPDATE outbox SET type = ?4, id = ?3, size = length(m.body) + ?5,
    body = m.body, ts = m.newest
FROM (
    SELECT json_object(
        'from_seq', min(covered_from), 'count', sum(covered), 'reason', 'ttl',
        'oldest_ts', min(oldest), 'newest_ts', max(newest)) AS body, max(newest) AS newest
    FROM (
        SELECT
            CASE WHEN type = ?4 THEN body ->> '$.from_seq' ELSE seq END
                AS covered_from,
            CASE WHEN type = ?4 THEN body ->> '$.count' ELSE 1 END AS covered,
            CASE WHEN type = ?4 THEN body ->> '$.oldest_ts' ELSE ts END AS oldest,
            CASE WHEN type = ?4 THEN body ->> '$.newest_ts' ELSE ts END AS newest
        FROM outbox WHERE stream = ?1 AND seq <= ?2
    )
) AS m
WHERE stream = ?1 AND seq = ?2
"""


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
class WireBatch:
    """Consecutive events of one stream, ready for an envelope's ``events`` array."""

    stream: str
    seq_from: int
    seq_to: int
    count: int
    events_json: str  # the events' JSON objects, comma-separated, in seq order


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

    def __init__(
        self, database: Database, clock: Clock, budget: BufferBudget | None = None
    ) -> None:
        self._db = database
        self._clock = clock
        self._known_streams: set[str] = set()
        self.appended = asyncio.Event()  # set after a commit that added events
        self._appended_streams: set[str] = set()
        self.pressure = BufferPressure(budget or BufferBudget())
        self.pressure_changed = asyncio.Event()  # something was shed or refused
        self._pending_bytes = 0  # submitted appends not yet committed
        self._base: dict[str, int] = {}  # per stream: end_offset before its first buffered row

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
        await self.refresh_usage()

    def append(
        self,
        stream: str,
        event_type: str,
        body: Mapping[str, Any],
        *,
        shed: Shed | None = None,
    ) -> asyncio.Future[None]:
        """Queue one event; the future resolves once it is committed (accepted)."""
        return self.append_many(stream, event_type, (body,), shed=shed)

    def append_many(
        self,
        stream: str,
        event_type: str,
        bodies: Iterable[Mapping[str, Any]],
        *,
        shed: Shed | None = None,
    ) -> asyncio.Future[None]:
        """Queue events of one type as one write: a single future for all of them, resolved
        when the transaction holding them committed (all accepted or none).

        ``shed`` is their class under buffer pressure (default by stream, see
        :func:`~gateway.store.budget.default_shed`). Lossy events over their threshold are
        dropped and counted — the future resolves at once; essential events over the budget
        fail with :class:`~gateway.errors.OutboxFullError` (not accepted).
        """
        rows, total, admission = self._admit(stream, event_type, bodies, shed)
        if admission is not Admission.ACCEPT:
            return self._turned_away(admission, stream, event_type, len(rows))
        future = self._db.submit_many(_INSERT, rows)
        future.add_done_callback(lambda done: self._on_committed(stream, total, done))
        return future

    def append_atomic(
        self,
        stream: str,
        event_type: str,
        bodies: Iterable[Mapping[str, Any]],
        *,
        before: Sequence[tuple[str, Sequence[Any]]],
    ) -> asyncio.Future[None]:
        """Commit ``before`` and these events in one transaction (a state change and its
        receipt). The state change never waits on the budget: if the events are turned away
        (counted, as in :meth:`append_many`) ``before`` still commits alone."""
        rows, total, admission = self._admit(stream, event_type, bodies, None)
        if admission is not Admission.ACCEPT:
            _LOGGER.error("%d %s/%s event(s) not buffered: budget", len(rows), stream, event_type)
            return self._db.submit_atomic(before)
        future = self._db.submit_atomic([*before, *((_INSERT, row) for row in rows)])
        future.add_done_callback(lambda done: self._on_committed(stream, total, done))
        return future

    def _admit(
        self,
        stream: str,
        event_type: str,
        bodies: Iterable[Mapping[str, Any]],
        shed: Shed | None,
    ) -> tuple[list[tuple[str, str, str, str, str, int]], int, Admission]:
        """Encode ``bodies`` into outbox rows and ask the budget; an accepted batch counts as
        pending until its commit settles it (:meth:`_on_committed`)."""
        if stream not in self._known_streams:
            raise KeyError(f"unknown outbox stream {stream!r}")
        stamp = event_stamp(self._clock)
        ts = str(stamp["ts"])
        unsynced = "unsynced" in stamp
        texts = [_ENCODE({**body, "unsynced": True} if unsynced else body) for body in bodies]
        ids = secrets.token_hex(8 * len(texts))  # one call for the batch: 16 hex digits each
        rows = [
            (stream, ids[16 * n : 16 * n + 16], ts, event_type, text, len(text) + _ROW_OVERHEAD)
            for n, text in enumerate(texts)
        ]
        total = sum(row[5] for row in rows)
        admission = self.pressure.admit(
            shed or default_shed(stream), stream, event_type, len(rows), total
        )
        if admission is Admission.ACCEPT:
            self._pending_bytes += total
        else:
            self.pressure_changed.set()
        return rows, total, admission

    def _turned_away(
        self, admission: Admission, stream: str, event_type: str, count: int
    ) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if admission is Admission.SHED:
            future.set_result(None)
        else:
            future.set_exception(
                OutboxFullError(
                    self._db.path,
                    f"outbox budget reached ({self.pressure.used_bytes} bytes buffered): "
                    f"{count} {stream}/{event_type} event(s) not accepted",
                )
            )
        return future

    def _on_committed(self, stream: str, size: int, future: asyncio.Future[None]) -> None:
        self._pending_bytes -= size
        if not future.cancelled() and future.exception() is None:
            self._appended_streams.add(stream)
            self.appended.set()
        else:
            self.pressure.used_bytes -= size  # never stored

    async def refresh_usage(self) -> int:
        """Re-read the buffered bytes from the database; returns them. Appends and releases
        keep the figure exact in between; this re-anchors it (start, expiry, keeper ticks)."""
        rows = await self._db.fetchall(_STATES)
        committed = 0
        for row in rows:
            base = int(row["appended_bytes"] if row["base"] is None else row["base"])
            self._base[str(row["stream"])] = base
            committed += int(row["appended_bytes"]) - base
        self.pressure.used_bytes = committed + self._pending_bytes
        return self.pressure.used_bytes

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

    async def read_wire(
        self, stream: str, *, after_seq: int, max_events: int, max_bytes: int
    ) -> WireBatch | None:
        """Like :meth:`read`, but the events come as wire JSON text (the uplink's path)."""
        rows = await self._db.fetchall(_READ_WIRE, (stream, after_seq, max_events, max_bytes))
        if not rows:
            return None
        return WireBatch(
            stream=stream,
            seq_from=int(rows[0][0]),
            seq_to=int(rows[-1][0]),
            count=len(rows),
            events_json=",".join([row[1] for row in rows]),
        )

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
        return await self._release(stream, seq, acked=True)

    async def release_sent(self, stream: str, seq: int) -> asyncio.Future[Any]:
        """``custody = "broker"``: the PUBACK is the end of the line; delete up to ``seq``."""
        released = await self._release(stream, seq, acked=False)
        if released is None:
            raise KeyError(f"stream {stream!r} has no seq {seq}")
        return released

    async def _release(self, stream: str, seq: int, *, acked: bool) -> asyncio.Future[Any] | None:
        row = await self._db.fetchone(
            "SELECT next_seq, (SELECT end_offset FROM outbox WHERE stream = ?1 AND seq <= ?2 "
            "ORDER BY seq DESC LIMIT 1) AS new_base FROM outbox_streams WHERE stream = ?1",
            (stream, seq),
        )
        if row is None or seq >= int(row["next_seq"]):
            return None
        if row["new_base"] is not None:  # bytes freed by this release, known before the delete
            new_base = int(row["new_base"])
            freed = new_base - self._base.get(stream, new_base)
            if freed > 0:
                self._base[stream] = new_base
                self.pressure.used_bytes -= freed
        if acked:
            marks = self._db.submit(
                "UPDATE outbox_streams SET acked_seq = max(acked_seq, ?), "
                "sent_seq = max(sent_seq, ?), acked_at = ? WHERE stream = ?",
                (seq, seq, self._clock.utc_now().isoformat(), stream),
            )
        else:
            marks = self._db.submit(
                "UPDATE outbox_streams SET sent_seq = max(sent_seq, ?), "
                "acked_seq = max(acked_seq, ?) WHERE stream = ?",
                (seq, seq, stream),
            )
        return asyncio.gather(
            marks,
            self._db.submit("DELETE FROM outbox WHERE stream = ? AND seq <= ?", (stream, seq)),
        )

    async def states(self) -> tuple[StreamState, ...]:
        """Marks, depth (rows buffered), bytes and oldest row per stream — index lookups only."""
        rows = await self._db.fetchall(_STATES)
        return tuple(
            StreamState(
                stream=str(row["stream"]),
                next_seq=int(row["next_seq"]),
                sent_seq=int(row["sent_seq"]),
                acked_seq=int(row["acked_seq"]),
                acked_at=row["acked_at"],
                depth=0 if row["first_seq"] is None else int(row["next_seq"] - row["first_seq"]),
                bytes=0 if row["base"] is None else int(row["appended_bytes"] - row["base"]),
                oldest_ts=row["oldest"],
            )
            for row in rows
        )

    async def expire(self, stream: str, ttl_s: float) -> int:
        """Replace the prefix of ``stream`` older than ``ttl_s`` by one ``outbox.expired``
        marker (expiry follows seq order: it stops at the first event still young enough).
        Returns how many rows the marker replaced (0: nothing expired)."""
        cutoff = isoformat_utc(self._clock.utc_now() - timedelta(seconds=ttl_s))
        bounds = await self._db.fetchone(
            "SELECT (SELECT min(seq) FROM outbox WHERE stream = ?1) AS first, "
            "(SELECT seq FROM outbox WHERE stream = ?1 AND ts >= ?2 ORDER BY seq LIMIT 1) "
            "AS young, (SELECT next_seq FROM outbox_streams WHERE stream = ?1) AS head",
            (stream, cutoff),
        )
        if bounds is None or bounds["first"] is None:
            return 0
        first = int(bounds["first"])
        last = (int(bounds["young"]) if bounds["young"] is not None else int(bounds["head"])) - 1
        if last < first or (last == first and not await self._is_plain_event(stream, first)):
            return 0  # nothing old enough, or only a marker already
        await self._db.submit(
            _MARK_EXPIRED, (stream, last, secrets.token_hex(8), EXPIRED_TYPE, _ROW_OVERHEAD)
        )
        await self._db.submit("DELETE FROM outbox WHERE stream = ? AND seq < ?", (stream, last))
        await self.refresh_usage()
        self._appended_streams.add(stream)  # the marker must be (re)sent
        self.appended.set()
        return last - first + 1

    async def _is_plain_event(self, stream: str, seq: int) -> bool:
        row = await self._db.fetchone(
            "SELECT type FROM outbox WHERE stream = ? AND seq = ?", (stream, seq)
        )
        return row is not None and row["type"] != EXPIRED_TYPE
