"""The outbox: every event promised to HQ, durable until HQ takes custody of it.

Events are appended to named streams (``stock``, ``dwell``, ``receipts``, ``alerts``…) as wire
models (:mod:`gateway.wire`: nothing the contract does not describe is taken), encoded once
(:mod:`gateway.wire.encoding`). Each gets a per-stream, gapless, 64-bit ``seq`` assigned
inside the committing transaction, a random ``id`` and its timestamp. Producers learn an event
is accepted only after the group commit holding it. Events are stored in rows of consecutive
seqs (one row per commit and stream: the appends of one loop step share it), their JSON objects
without seq one per line. Three marks are kept per stream::

    appended ──PUBACK──▶ sent (sent_seq) ──HQ watermark on down/ack──▶ released (acked_seq)

A row is deleted once the watermark passes its last seq; reads start after the watermark, so
the released part of a row still there is never sent again. Sent-but-unacknowledged events are
re-read from the watermark after a reconnect (HQ de-duplicates on store, stream, epoch, seq).

The outbox holds a byte budget (:mod:`gateway.store.budget`): under pressure lossy classes are
shed first, essential events are refused only at the budget less the alert reserve. A stream's
TTL replaces its expired prefix by one ``outbox.expired`` marker that takes the last expired seq
and says which seqs it stands for, so HQ's contiguous watermark can pass them. Deletes only ever
remove a prefix of a stream, which keeps the byte accounting an index lookup (migration 4).

Seqs count within an epoch: the database's, or a stream's own once it had to start a new one.
A stream whose database went back in time (restored from a copy, a lost WAL) would give seqs
HQ already holds to new events; it is noticed at open by its high-water mark
(:mod:`gateway.store.highwater`) or later by HQ acknowledging a seq beyond its head, and
:meth:`Outbox.start_new_epoch` moves it to a new epoch, its buffered events re-sequenced
from 1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate, islice, repeat
from operator import is_not
from typing import Any, NamedTuple

from gateway.clock import Clock, isoformat_utc
from gateway.errors import OutboxFullError
from gateway.store.budget import Admission, BufferBudget, BufferPressure, Shed, default_shed
from gateway.store.database import Database
from gateway.store.highwater import HighWater, HighWaterFile, went_back
from gateway.wire.encoding import (
    OutboxEvent,
    WireBatch,
    encode_bodies,
    encode_event,
    encode_events,
    encode_fields,
    event_objects,
    wire_batch,
)
from gateway.wire.envelope import EventBody, TrustedEvents
from gateway.wire.expiry import EXPIRED_TYPE, OutboxExpired
from gateway.wire.registry import WIRE_EVENTS, EventCatalogue

__all__ = [
    "STREAM_NAME_PATTERN",
    "EpochChange",
    "Outbox",
    "StreamState",
]

STREAM_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"

_ENCODE = json.JSONEncoder(separators=(",", ":"), default=str, check_circular=False).encode
_EXPIRED_JSON = _ENCODE(EXPIRED_TYPE)

_LOGGER = logging.getLogger(__name__)

_ROW_OVERHEAD = 80  # bytes a row costs beyond its events text (keys, index entry)
_WIRE_OVERHEAD = 12  # bytes an event gains on the wire (its seq) and in the envelope
_BATCH_MAX_EVENTS = 512  # events per row: a row is read whole, envelopes take ~500 events
_BATCH_MAX_CHARS = 192 * 1024
_ENCODE_SLICE = 256  # events of a generator encoded at a time (Outbox._encode)
_MILLISECOND = timedelta(milliseconds=1)
_ID_BLOCK_BYTES = 4096  # random bytes drawn at once for event ids (256 ids)

# One row per committed batch; its seqs are taken inside the committing transaction (the
# trigger of migration 8 moves next_seq on), so a rolled-back batch leaves no gap.
# Parameters: ?1 stream, ?2 events, ?3 oldest ts, ?4 newest ts, ?5 size, ?6 events text.
_INSERT = (
    "INSERT INTO outbox_batches "
    "(stream, seq_from, seq_to, count, oldest_ts, newest_ts, size, end_offset, events) "
    "SELECT ?1, next_seq, next_seq + ?2 - 1, ?2, ?3, ?4, ?5, appended_bytes + ?5, ?6 "
    "FROM outbox_streams WHERE stream = ?1"
)

# The rows holding the next events of a stream after seq ?2 (or after HQ's watermark, if
# higher: released events of a row not yet deleted are gone), enough for ?3 events and ?4
# bytes by their counts and sizes (from the covering index; a marker counts as one event;
# of a row begun before the start only its events after it count, its size pro rata),
# always at least one row so an oversized event cannot block its stream.
_READ = """
WITH start AS MATERIALIZED (
    SELECT max(?2, acked_seq) AS after FROM outbox_streams WHERE stream = ?1
), picked AS MATERIALIZED (
    SELECT seq_to FROM (
        SELECT seq_to,
            sum(count) OVER w - count AS events_before,
            sum(size) OVER w - size AS bytes_before
        FROM (SELECT seq_to,
                CASE WHEN marker THEN 1
                    ELSE seq_to - max(seq_from - 1, (SELECT after FROM start)) END AS count,
                CASE WHEN marker OR seq_from > (SELECT after FROM start) THEN size
                    ELSE size * (seq_to - (SELECT after FROM start)) / count END AS size
              FROM outbox_batches WHERE stream = ?1 AND seq_to > (SELECT after FROM start)
              ORDER BY seq_to LIMIT ?3)
        WINDOW w AS (ORDER BY seq_to ROWS UNBOUNDED PRECEDING)
    ) WHERE events_before < ?3 AND bytes_before < ?4
)
SELECT b.seq_from, b.seq_to, b.marker, b.events, start.after
FROM start CROSS JOIN picked CROSS JOIN outbox_batches AS b
WHERE b.stream = ?1 AND b.seq_to = picked.seq_to
ORDER BY b.seq_to
"""

_ACKED = (
    "UPDATE outbox_streams SET acked_seq = max(acked_seq, ?1), sent_seq = max(sent_seq, ?1), "
    "acked_at = ?3 WHERE stream = ?2"
)
_RELEASED = (  # custody = "broker"
    "UPDATE outbox_streams SET sent_seq = max(sent_seq, ?1), acked_seq = max(acked_seq, ?1) "
    "WHERE stream = ?2"
)
# The last expired row becomes the marker (the rows before it are deleted in the same commit).
_TO_MARKER = (
    "UPDATE outbox_batches SET seq_from = ?3, count = ?4, oldest_ts = ?5, marker = 1, "
    "events = ?6, size = ?7 WHERE stream = ?1 AND seq_to = ?2"
)

# A stream's new epoch: its buffered events take seqs from 1 on (the released part of a row
# not deleted yet goes to seqs <= 0, which reads skip), in one transaction with the marks.
# A marker's own from_seq moves with it. ?1 stream, ?2 the new epoch.
_RESEQUENCE_ROWS = """
UPDATE outbox_batches SET
    seq_from = seq_from - (SELECT acked_seq FROM outbox_streams WHERE stream = ?1),
    seq_to = seq_to - (SELECT acked_seq FROM outbox_streams WHERE stream = ?1),
    events = CASE WHEN marker THEN json_set(events, '$.from_seq', max(1,
        (events ->> '$.from_seq') - (SELECT acked_seq FROM outbox_streams WHERE stream = ?1)))
        ELSE events END
WHERE stream = ?1
"""
_RESEQUENCE_STREAM = (
    "UPDATE outbox_streams SET epoch = ?2, next_seq = next_seq - acked_seq, sent_seq = 0, "
    "acked_seq = 0, acked_at = NULL WHERE stream = ?1"
)

_HEADS = "SELECT stream, epoch, next_seq FROM outbox_streams"

# Per stream: marks, and the first buffered row (depth, bytes and age without a scan).
_STATES = (
    "SELECT s.stream, s.epoch, s.next_seq, s.sent_seq, s.acked_seq, s.acked_at, s.appended_bytes, "
    "CASE WHEN f.marker THEN f.seq_to ELSE f.seq_from END AS first_seq, f.oldest_ts AS oldest, "
    "f.end_offset - f.size AS base "
    "FROM outbox_streams s LEFT JOIN outbox_batches f ON f.stream = s.stream "
    "AND f.seq_to = (SELECT min(seq_to) FROM outbox_batches WHERE stream = s.stream) "
    "ORDER BY s.stream"
)


@dataclass(frozen=True, slots=True)
class EpochChange:
    """A stream moved to a new epoch because its database went back in time."""

    stream: str
    old_epoch: str
    new_epoch: str
    resequenced: int  # buffered events, now seqs 1..resequenced of the new epoch
    reason: str


@dataclass(frozen=True, slots=True)
class StreamState:
    stream: str
    epoch: str
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
            "epoch": self.epoch,
            "next_seq": self.next_seq,
            "sent_seq": self.sent_seq,
            "acked_seq": self.acked_seq,
            "acked_at": self.acked_at,
            "depth": self.depth,
            "bytes": self.bytes,
            "oldest_ts": self.oldest_ts,
        }


def _chunks(texts: list[str]) -> list[tuple[list[str], int]]:
    """``texts`` cut into rows of at most _BATCH_MAX_EVENTS events and _BATCH_MAX_CHARS
    accounted bytes (an event bigger than that gets a row of its own), each with its accounted
    size (the events' text, a separator each, the row's overhead): a row is read whole for
    every envelope cut from it. :meth:`Outbox._admit` sizes the common one-row case itself.

    One pass in C over the lengths, then a binary search per row (a batch of thousands of
    events is cut without a Python step per event)."""
    count = len(texts)
    chars = list(accumulate(map(len, texts), initial=0))  # chars[i]: of the first i events

    def size(start: int, end: int) -> int:
        return chars[end] - chars[start] + (end - start) + _ROW_OVERHEAD

    rows: list[tuple[list[str], int]] = []
    start = 0
    while start < count:
        low, high = start + 1, min(count, start + _BATCH_MAX_EVENTS)
        while low < high:  # the longest row from ``start`` that fits (at least one event)
            middle = (low + high + 1) // 2
            if size(start, middle) <= _BATCH_MAX_CHARS:
                low = middle
            else:
                high = middle - 1
        rows.append((texts[start:low], size(start, low)))
        start = low
    return rows


def _settle(done: asyncio.Future[None], waiters: list[asyncio.Future[None]]) -> None:
    """Pass the outcome of a commit on to the producers still waiting for it."""
    error = None if done.cancelled() else done.exception()
    for waiter in waiters:
        if waiter.done():  # the producer gave up waiting: the commit stands
            continue
        if done.cancelled():
            waiter.cancel()
        elif error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(None)


def _waiter(committed: asyncio.Future[None]) -> asyncio.Future[None]:
    """A future for the producer, settled by ``committed``: cancelling it (a timeout, the
    producer's task stopped) must not look like a commit that never happened, which would
    uncount stored bytes (:meth:`Outbox._on_committed`)."""
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    committed.add_done_callback(lambda done: _settle(done, [waiter]))
    return waiter


class _Admitted(NamedTuple):
    """What :meth:`Outbox._admit` made of an append: its stored texts, cut into rows."""

    event_type: str
    texts: list[str]
    chunks: list[tuple[list[str], int]]  # (texts of one row, its accounted size)
    ts: str
    total: int
    admission: Admission


@dataclass(slots=True)
class _Pending:
    """Events of one stream waiting for the end of the current loop step, to be committed as
    one row; ``waiters`` are their producers' futures."""

    texts: list[str]
    oldest: str
    newest: str
    size: int
    waiters: list[asyncio.Future[None]]


class Outbox:
    """Append, read for sending, mark sent, and release on HQ's watermark."""

    def __init__(
        self,
        database: Database,
        clock: Clock,
        budget: BufferBudget | None = None,
        *,
        events: EventCatalogue = WIRE_EVENTS,
    ) -> None:
        self._db = database
        self._catalogue = events  # the event types taken: the wire contract's
        self._clock = clock
        self._known_streams: set[str] = set()
        self.appended = asyncio.Event()  # set after a commit that added events
        self._appended_streams: set[str] = set()
        self.pressure = BufferPressure(budget or BufferBudget())
        self.pressure_changed = asyncio.Event()  # something was shed or refused
        self._pending_bytes = 0  # accepted appends not yet committed
        self._base: dict[str, int] = {}  # per stream: end_offset before its first buffered row
        self._pending: dict[str, _Pending] = {}  # per stream: appends of this loop step
        self._ts = ""  # the text of the instants from _ts_from until _ts_until (_stamp)
        self._ts_from = self._ts_until = datetime.min.replace(tzinfo=UTC)
        self._id_pool: list[str] = []
        self._id_next = 0  # the first unused id of the pool
        self._flush_scheduled = False
        self._epochs: dict[str, str] = {}  # streams with an epoch of their own
        self._highwater = HighWaterFile.beside(database.path, database.epoch)
        self._marks: dict[str, HighWater] = {}
        self._epoch_changes: list[EpochChange] = []

    @property
    def epoch(self) -> str:
        """The database's epoch: every stream's, unless it had to start its own."""
        return self._db.epoch

    def epoch_of(self, stream: str) -> str:
        """The epoch ``stream``'s seqs count in (its envelopes carry it)."""
        return self._epochs.get(stream, self._db.epoch)

    async def open(self, streams: tuple[str, ...] = ()) -> None:
        """Make sure ``streams`` exist; loads the ones already in the database. A stream that
        went back in time since its high-water mark starts a new epoch here."""
        rows = await self._db.fetchall("SELECT stream FROM outbox_streams")
        self._known_streams = {str(row["stream"]) for row in rows}
        missing = [(name,) for name in streams if name not in self._known_streams]
        if missing:
            await self._db.write_many(
                "INSERT OR IGNORE INTO outbox_streams (stream) VALUES (?)", missing
            )
            self._known_streams.update(name for (name,) in missing)
        await self._check_high_water()
        await self.refresh_usage()

    async def _heads(self) -> dict[str, tuple[str, int]]:
        """Per stream: its epoch and the seq its next event gets (committed)."""
        return {
            str(row["stream"]): (str(row["epoch"] or self._db.epoch), int(row["next_seq"]))
            for row in await self._db.fetchall(_HEADS)
        }

    async def _check_high_water(self) -> None:
        marks = self._highwater.load()
        heads = await self._heads()
        self._epochs = {stream: epoch for stream, (epoch, _next) in heads.items()}
        for stream, (epoch, next_seq) in heads.items():
            mark = marks.get(stream)
            if not went_back(epoch, next_seq, mark):
                continue
            assert mark is not None
            if mark.epoch != epoch:
                reason = (
                    f"the database holds epoch {epoch} of {stream}, but epoch {mark.epoch} was "
                    "in use: it is a copy from before that epoch began"
                )
            else:
                reason = (
                    f"{stream} would go on at seq {next_seq}, but seqs up to {mark.seq} of its "
                    "epoch may have left the store: the database is older than the last run "
                    "(restored from a copy, or its WAL was lost)"
                )
            await self.start_new_epoch(stream, reason)
        self._raise_marks(await self._heads())

    def _raise_marks(self, heads: Mapping[str, tuple[str, int]]) -> None:
        """Marks up to the committed heads (a head only ever grows within an epoch), saved."""
        for stream, (epoch, next_seq) in heads.items():
            if epoch != self.epoch_of(stream):  # changing at this very moment
                continue
            mark = self._marks.get(stream)
            if mark is None or mark.epoch != epoch or mark.seq < next_seq - 1:
                self._marks[stream] = HighWater(epoch, next_seq - 1)
        self._highwater.save(self._marks)

    async def mark_leaving(self, stream: str, seq: int) -> None:
        """Call before ``seq`` of ``stream`` is published: the high-water file must cover it.
        One write raises every stream's mark to its committed head, so a backlog costs one."""
        mark = self._marks.get(stream)
        if mark is not None and mark.epoch == self.epoch_of(stream) and mark.seq >= seq:
            return
        self._raise_marks(await self._heads())

    async def start_new_epoch(self, stream: str, reason: str) -> EpochChange:
        """Move ``stream`` to a new epoch: its buffered events get seqs 1, 2… in it (HQ holds
        none of them under the new epoch, so none is taken for a duplicate), its marks start
        over. Logged; :meth:`take_epoch_changes` hands the change on (for an alert)."""
        old = self.epoch_of(stream)
        new = secrets.token_hex(8)
        # From here on, acks and expiries still counting in the old epoch are refused (their
        # writes would land on the new seqs).
        self._epochs[stream] = new
        try:
            await self._db.submit_atomic(
                [(_RESEQUENCE_ROWS, (stream,)), (_RESEQUENCE_STREAM, (stream, new))]
            )
        except BaseException:
            self._epochs[stream] = old  # nothing changed in the database
            raise
        heads = await self._heads()
        resequenced = heads[stream][1] - 1
        self._marks[stream] = HighWater(new, 0)
        self._raise_marks(heads)
        change = EpochChange(stream, old, new, resequenced, reason)
        self._epoch_changes.append(change)
        _LOGGER.warning(
            "outbox stream %s went back in time (%s): it starts epoch %s (was %s), its %d "
            "buffered event(s) re-sent from seq 1",
            stream,
            reason,
            new,
            old,
            resequenced,
        )
        return change

    def take_epoch_changes(self) -> list[EpochChange]:
        """Epoch changes since the last call."""
        changes, self._epoch_changes = self._epoch_changes, []
        return changes

    async def beyond_head(self, stream: str, epoch: str, seq: int) -> bool:
        """True when HQ acknowledges ``seq`` in the stream's current epoch although the
        stream never got that far: its database went back in time."""
        if stream not in self._known_streams or epoch != self.epoch_of(stream):
            return False
        row = await self._db.fetchone(
            "SELECT next_seq FROM outbox_streams WHERE stream = ?", (stream,)
        )
        return row is not None and seq >= int(row["next_seq"]) and epoch == self.epoch_of(stream)

    def append(
        self, stream: str, event: EventBody, *, shed: Shed | None = None
    ) -> asyncio.Future[None]:
        """Queue one event; the future resolves once it is committed (accepted). ``event``
        is a model of one of the outbox's event types (:data:`~gateway.wire.WIRE_EVENTS`);
        anything else raises TypeError."""
        return self.append_many(stream, (event,), shed=shed)

    def append_many(
        self, stream: str, events: Iterable[EventBody], *, shed: Shed | None = None
    ) -> asyncio.Future[None]:
        """Queue events of one type: a single future for all of them, resolved when the
        transaction holding them committed (all accepted or none).

        Appends to a stream made in the same loop step share one row and one commit (many
        producers appending one event each cost one insert, not one each). ``shed`` is their
        class under buffer pressure (default by stream, see
        :func:`~gateway.store.budget.default_shed`). Lossy events over their threshold are
        dropped and counted — the future resolves at once; essential events over the budget
        fail with :class:`~gateway.errors.OutboxFullError` (not accepted). Events of several
        types, or of a type not in the outbox's catalogue, raise TypeError (nothing queued).
        """
        event_type, texts, chunks, ts, total, admission = self._admit(stream, events, shed)
        if not texts:
            return self._turned_away(Admission.SHED, stream, event_type, 0)  # nothing to do
        if admission is not Admission.ACCEPT:
            return self._turned_away(admission, stream, event_type, len(texts))
        pending = self._pending.get(stream)
        if pending is not None and (
            len(pending.texts) + len(texts) > _BATCH_MAX_EVENTS
            or pending.size + total > _BATCH_MAX_CHARS
        ):
            self._flush(stream)
            pending = None
        if pending is None and (len(texts) >= _BATCH_MAX_EVENTS // 2 or total > _BATCH_MAX_CHARS):
            return self._submit(stream, self._rows(stream, chunks, ts), total)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if pending is None:
            self._pending[stream] = _Pending(texts, ts, ts, total, [waiter])
            if not self._flush_scheduled:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush_all)
        else:
            pending.texts.extend(texts)
            pending.newest = ts
            pending.size += total
            pending.waiters.append(waiter)
        return waiter

    def append_atomic(
        self,
        stream: str,
        events: Iterable[EventBody],
        *,
        before: Sequence[tuple[str, Sequence[Any]]],
        weight: int | None = None,
    ) -> asyncio.Future[None]:
        """Commit ``before`` and these events (of one type, as :meth:`append_many`) in one
        transaction (a state change and its receipt). The state change never waits on the
        budget: if the events are turned away (counted, as in :meth:`append_many`) ``before``
        still commits alone. ``weight``: what ``before`` counts for toward filling a commit
        when its statements stand for many records (:meth:`Database.submit_atomic`); default
        one per statement."""
        before_weight = len(before) if weight is None else weight
        event_type, texts, chunks, ts, total, admission = self._admit(stream, events, None)
        if not texts:
            return self._db.submit_atomic(before, weight=before_weight)
        if admission is not Admission.ACCEPT:
            _LOGGER.error("%d %s/%s event(s) not buffered: budget", len(texts), stream, event_type)
            return self._db.submit_atomic(before, weight=before_weight)
        self._flush(stream)  # appends made before this one get the earlier seqs
        committed = self._db.submit_atomic(
            [*before, *((_INSERT, row) for row in self._rows(stream, chunks, ts))],
            weight=before_weight + len(texts),
        )
        committed.add_done_callback(lambda done: self._on_committed(stream, total, done))
        return _waiter(committed)

    def _admit(self, stream: str, events: Iterable[EventBody], shed: Shed | None) -> _Admitted:
        """Check ``events`` are of one type of the catalogue, encode them as stored events
        (JSON objects without seq), cut them into rows and ask the budget; accepted bytes count
        as pending until their commit settles them. The type name is "" for no events."""
        if stream not in self._known_streams:
            raise KeyError(f"unknown outbox stream {stream!r}")
        event_type, type_json, encoded = self._encode(events)
        ts, unsynced = self._stamp()
        if not encoded:
            return _Admitted("", [], [], ts, 0, Admission.ACCEPT)
        texts = event_objects(self._ids(len(encoded)), ts, type_json, encoded, unsynced=unsynced)
        count = len(texts)
        total = sum(map(len, texts)) + count + _ROW_OVERHEAD  # as one row
        if count <= _BATCH_MAX_EVENTS and total <= _BATCH_MAX_CHARS:
            chunks = [(texts, total)]
        else:
            chunks = _chunks(texts)
            total = sum(size for _, size in chunks)
        admission = self.pressure.admit(
            shed or default_shed(stream), stream, event_type, len(texts), total
        )
        if admission is Admission.ACCEPT:
            self._pending_bytes += total
        else:
            self.pressure_changed.set()
        return _Admitted(event_type, texts, chunks, ts, total, admission)

    def _encode(self, events: Iterable[EventBody]) -> tuple[str, str, list[str]]:
        """``events`` (all of one type of the catalogue, else TypeError) as their bodies'
        JSON texts, with the type name and the name as JSON text. A generator is taken in
        slices: its models are dropped as soon as they are encoded, not kept alive all at
        once (fewer objects for the garbage collector to walk on a batch of thousands)."""
        if isinstance(events, tuple) and len(events) == 1:  # one producer's event (append)
            event_type, type_json = self._catalogue.type_of(events[0])
            return event_type, type_json, [encode_event(events[0])]
        if isinstance(events, TrustedEvents):  # a trusted batch: encoded from its fields
            if not events:
                return "", "", []
            event_type, type_json = self._catalogue.type_named(events.model)
            return event_type, type_json, encode_fields(events.model, events.fields)
        if isinstance(events, (list, tuple)):
            slices: Iterable[Sequence[EventBody]] = (events,)
        else:
            iterator = iter(events)
            slices = iter(lambda: list(islice(iterator, _ENCODE_SLICE)), [])
        encoded: list[str] = []
        event_type = type_json = ""
        model: type[EventBody] | None = None
        for part in slices:
            if not part:
                break
            if model is None:
                model = type(part[0])
                event_type, type_json = self._catalogue.type_of(part[0])
            if any(map(is_not, map(type, part), repeat(model))):  # a C-level loop
                other = next(event for event in part if type(event) is not model)
                raise TypeError(
                    f"append {event_type} events alone: {type(other).__qualname__} among them"
                )
            encoded += encode_events(part)
        return event_type, type_json, encoded

    def _stamp(self) -> tuple[str, bool]:
        """:func:`~gateway.clock.event_stamp`'s ``ts`` and whether it adds ``unsynced``; the
        text of an instant is made once per millisecond (appends come many a millisecond)."""
        now = self._clock.utc_now()
        if not self._ts_from <= now < self._ts_until:
            self._ts = isoformat_utc(now)
            self._ts_from = now.replace(microsecond=now.microsecond - now.microsecond % 1000)
            self._ts_until = self._ts_from + _MILLISECOND
        return self._ts, not self._clock.is_synchronized()

    def _ids(self, count: int) -> list[str]:
        """``count`` random event ids, 16 hex digits each; drawn from the OS in blocks (one
        call per block, not per event) and cut in C (``bytes.hex`` with a separator)."""
        start, end = self._id_next, self._id_next + count
        if end > len(self._id_pool):
            drawn = secrets.token_bytes(max(8 * count, _ID_BLOCK_BYTES)).hex(" ", -8).split()
            self._id_pool = self._id_pool[start:] + drawn
            start, end = 0, count
        self._id_next = end
        return self._id_pool[start:end]

    @staticmethod
    def _row(stream: str, texts: list[str], oldest: str, newest: str, size: int) -> tuple[Any, ...]:
        # JSON text never holds a raw newline: it separates the events.
        return (stream, len(texts), oldest, newest, size, "\n".join(texts))

    def _rows(
        self, stream: str, chunks: list[tuple[list[str], int]], ts: str
    ) -> list[tuple[Any, ...]]:
        """Rows of :meth:`_admit`'s chunks; their sizes add up to its total."""
        return [self._row(stream, chunk, ts, ts, size) for chunk, size in chunks]

    def _submit(self, stream: str, rows: list[tuple[Any, ...]], total: int) -> asyncio.Future[None]:
        committed = self._db.submit_many(_INSERT, rows, weight=sum(row[1] for row in rows))
        committed.add_done_callback(lambda done: self._on_committed(stream, total, done))
        return _waiter(committed)

    def _flush_all(self) -> None:
        self._flush_scheduled = False
        for stream in list(self._pending):
            self._flush(stream)

    def _flush(self, stream: str) -> None:
        pending = self._pending.pop(stream, None)
        if pending is None:
            return
        row = self._row(stream, pending.texts, pending.oldest, pending.newest, pending.size)
        committed = self._db.submit_many(_INSERT, [row], weight=len(pending.texts))
        committed.add_done_callback(lambda done: self._on_committed(stream, pending.size, done))
        committed.add_done_callback(lambda done: _settle(done, pending.waiters))

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

    async def _events(
        self, stream: str, after_seq: int, max_events: int, max_bytes: int
    ) -> list[tuple[int, list[str]]]:
        """The next events after ``after_seq`` within both limits (at least one when any is
        there), as runs of consecutive seqs: (first seq, stored JSON objects)."""
        rows = await self._db.fetchall(_READ, (stream, after_seq, max_events, max_bytes))
        runs: list[tuple[int, list[str]]] = []
        taken = 0
        room = max_bytes
        for seq_from, seq_to, marker, events, after in rows:
            if marker:
                texts, first, chars = [events], seq_to, len(events)
            else:
                texts, first, chars = events.split("\n"), seq_from, len(events) + 1
                if first <= after:  # a row partly sent or released already
                    skipped = texts[: after + 1 - first]
                    chars -= sum(map(len, skipped)) + len(skipped)
                    texts, first = texts[len(skipped) :], after + 1
            cost = chars + (_WIRE_OVERHEAD - 1) * len(texts)
            if taken + len(texts) <= max_events and cost <= room:  # the whole row fits
                runs.append((first, texts))
                taken += len(texts)
                room -= cost
                continue
            fitting = 0
            for text in texts:  # the row is cut: event by event
                room -= len(text) + _WIRE_OVERHEAD
                if (taken or fitting) and (room < 0 or taken + fitting >= max_events):
                    break
                fitting += 1
            if fitting:
                runs.append((first, texts[:fitting]))
            break
        return runs

    async def read(
        self, stream: str, *, after_seq: int, max_events: int, max_bytes: int
    ) -> list[OutboxEvent]:
        """Events of ``stream`` with seq > ``after_seq`` in order, within both limits (always
        at least one event when any is there, so an oversized event cannot block a stream)."""
        events = []
        for first, texts in await self._events(stream, after_seq, max_events, max_bytes):
            for seq, text in enumerate(texts, first):
                body = json.loads(text)
                event_id, ts, event_type = body.pop("id"), body.pop("ts"), body.pop("type")
                events.append(
                    OutboxEvent(stream, seq, event_id, ts, event_type, _ENCODE(body), len(text))
                )
        return events

    async def read_wire(
        self, stream: str, *, after_seq: int, max_events: int, max_bytes: int
    ) -> WireBatch | None:
        """Like :meth:`read`, but the events come as wire JSON text (the uplink's path): each
        stored object gets its seq spliced in front, no per-event parsing."""
        return wire_batch(stream, await self._events(stream, after_seq, max_events, max_bytes))

    def mark_sent(self, stream: str, seq: int) -> asyncio.Future[None]:
        """The broker PUBACKed everything of ``stream`` up to ``seq`` (resolves on commit)."""
        return self._db.submit(
            "UPDATE outbox_streams SET sent_seq = max(sent_seq, ?) WHERE stream = ?",
            (seq, stream),
        )

    async def acknowledge(self, stream: str, epoch: str, seq: int) -> asyncio.Future[Any] | None:
        """HQ durably holds ``stream`` up to ``seq``: release those events.

        Returns the future of the release (resolved on commit) without waiting for it — losing
        an ack to a crash only means re-sending events HQ will de-duplicate. An ack for another
        epoch (a previous database), an unknown stream or a seq never appended answers None.
        A row is deleted once all its events are released; reads skip the released part of a
        row until then.
        """
        if epoch != self.epoch_of(stream) or stream not in self._known_streams or seq < 0:
            return None
        return await self._release(stream, seq, acked=True)

    async def release_sent(self, stream: str, seq: int) -> asyncio.Future[Any]:
        """``custody = "broker"``: the PUBACK is the end of the line; delete up to ``seq``."""
        released = await self._release(stream, seq, acked=False)
        if released is None:
            raise KeyError(f"stream {stream!r} has no seq {seq}")
        return released

    async def _release(self, stream: str, seq: int, *, acked: bool) -> asyncio.Future[Any] | None:
        epoch = self.epoch_of(stream)
        row = await self._db.fetchone(
            "SELECT next_seq, (SELECT end_offset FROM outbox_batches WHERE stream = ?1 "
            "AND seq_to <= ?2 ORDER BY seq_to DESC LIMIT 1) AS new_base "
            "FROM outbox_streams WHERE stream = ?1",
            (stream, seq),
        )
        if row is None or seq >= int(row["next_seq"]) or epoch != self.epoch_of(stream):
            return None
        if row["new_base"] is not None:  # bytes freed by this release, known before the delete
            new_base = int(row["new_base"])
            freed = new_base - self._base.get(stream, new_base)
            if freed > 0:
                self._base[stream] = new_base
                self.pressure.used_bytes -= freed
        if acked:
            marks: tuple[str, Sequence[Any]] = (
                _ACKED,
                (seq, stream, self._clock.utc_now().isoformat()),
            )
        else:
            marks = (_RELEASED, (seq, stream))
        return self._db.submit_atomic(
            [marks, ("DELETE FROM outbox_batches WHERE stream = ? AND seq_to <= ?", (stream, seq))]
        )

    async def states(self) -> tuple[StreamState, ...]:
        """Marks, depth (events buffered), bytes and oldest row per stream — index lookups."""
        rows = await self._db.fetchall(_STATES)
        return tuple(
            StreamState(
                stream=str(row["stream"]),
                epoch=str(row["epoch"] or self._db.epoch),
                next_seq=int(row["next_seq"]),
                sent_seq=int(row["sent_seq"]),
                acked_seq=int(row["acked_seq"]),
                acked_at=row["acked_at"],
                depth=0
                if row["first_seq"] is None
                else int(row["next_seq"]) - max(int(row["first_seq"]), int(row["acked_seq"]) + 1),
                bytes=0 if row["base"] is None else int(row["appended_bytes"] - row["base"]),
                oldest_ts=row["oldest"],
            )
            for row in rows
        )

    async def expire(self, stream: str, ttl_s: float) -> int:
        """Replace the prefix of ``stream`` older than ``ttl_s`` by one ``outbox.expired``
        marker (expiry follows seq order: it stops at the first row still young enough).
        The marker takes the last expired seq and says which seqs it stands for; an earlier
        marker among them is folded in. Returns how many seqs the new marker took over (0:
        nothing expired)."""
        cutoff = isoformat_utc(self._clock.utc_now() - timedelta(seconds=ttl_s))
        epoch = self.epoch_of(stream)
        old = await self._db.fetchone(
            "SELECT min(CASE WHEN marker THEN seq_to ELSE seq_from END) AS first, "
            "min(seq_from) AS covered_from, max(seq_to) AS last, min(oldest_ts) AS oldest, "
            "max(newest_ts) AS newest, count(*) AS rows, max(marker) AS has_marker, "
            "(SELECT acked_seq FROM outbox_streams WHERE stream = ?1) AS acked "
            "FROM outbox_batches WHERE stream = ?1 AND seq_to < coalesce("
            "(SELECT seq_to FROM outbox_batches WHERE stream = ?1 AND newest_ts >= ?2 "
            "ORDER BY seq_to LIMIT 1), 1 << 62)",
            (stream, cutoff),
        )
        if old is None or old["last"] is None or (old["rows"] == 1 and old["has_marker"]):
            return 0  # nothing old enough, or only a marker already
        if epoch != self.epoch_of(stream):
            return 0  # re-sequenced meanwhile: next time
        last = int(old["last"])
        covered_from = max(int(old["covered_from"]), int(old["acked"] or 0) + 1)
        # Built from the outbox's own stored stamps, not validated again: a row written by an
        # older release must expire all the same.
        expired = OutboxExpired.model_construct(
            from_seq=covered_from,
            count=last - covered_from + 1,
            reason="ttl",
            oldest_ts=old["oldest"],
            newest_ts=old["newest"],
        )
        [marker] = event_objects(
            [secrets.token_hex(8)], str(old["newest"]), _EXPIRED_JSON, encode_bodies((expired,))
        )
        await self._db.submit_atomic(
            [
                (
                    _TO_MARKER,
                    (
                        stream,
                        last,
                        covered_from,
                        last - covered_from + 1,
                        old["oldest"],
                        marker,
                        len(marker) + _ROW_OVERHEAD,
                    ),
                ),
                ("DELETE FROM outbox_batches WHERE stream = ? AND seq_to < ?", (stream, last)),
            ]
        )
        await self.refresh_usage()
        self._appended_streams.add(stream)  # the marker must be (re)sent
        self.appended.set()
        # Released events of a row not deleted yet are HQ's: they did not expire.
        return last - max(int(old["first"]), int(old["acked"] or 0) + 1) + 1
