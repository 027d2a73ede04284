"""The reference HQ consumer: store every event durably and de-duplicated, then take custody.

For each ``(store, stream, epoch)`` it keeps the contiguous watermark (every seq up to it is
stored) and the seqs stored above it. An envelope's new events are committed *before* the ack
``{stream, epoch, seq: watermark}`` is published on ``retail/v1/{store}/down/ack`` — that order
is the whole custody contract (docs/protocol.md). Missing seqs above the watermark are reported
as gaps (they arrive later: the gateway re-sends from the watermark). An ``outbox.expired``
marker stands for the seqs ``from_seq..seq`` that the gateway's TTL dropped before HQ had them:
they count as accounted for, so the watermark passes them (and the loss is logged and counted).

A seq HQ holds arriving again with another event id is a **conflict**, not a duplicate: the
store's database went back in time (restored from a copy) and gave that seq to a new event.
The new event is not stored under it (the key is taken); conflicts are counted per key, logged
when new ones appear, and summed up by ``storegw hq tail``. The store notices from HQ's
watermark, or from its high-water file, and re-sends such events under a new epoch.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any, cast

from pydantic import ValidationError

from gateway.errors import StorageError
from gateway.hq.intake import (
    EXPIRED,
    Ack,
    EventRow,
    Key,
    Ledger,
    Origin,
    ack_for,
    check_origin,
    finite_json,
    warn_deferred,
    warn_expired,
)
from gateway.hq.sqlite_schema import HQ_MIGRATIONS
from gateway.store.database import Database
from gateway.wire.envelope import EnvelopeHeaders, EventHeader

__all__ = [
    "HQ_MIGRATIONS",
    "Ack",
    "EmitEvents",
    "EnvelopeHeaders",
    "EventHeader",
    "HqConsumer",
]

_LOGGER = logging.getLogger(__name__)

_STORE_BATCH = "INSERT OR IGNORE INTO hq_batches VALUES (?, ?, ?, ?, ?, ?, ?)"
_STORE_WATERMARK = (
    "INSERT INTO hq_watermarks VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE "
    "SET seq = max(seq, excluded.seq)"
)

_Key = Key

# The ids HQ holds for the seqs of one key within a range (the rows overlapping it).
_HELD_IDS = (
    "SELECT e.value ->> '$.seq' AS seq, e.value ->> '$.id' AS id "
    "FROM hq_batches b, json_each(b.payload, '$.events') e "
    "WHERE b.store = ? AND b.stream = ? AND b.epoch = ? AND b.seq_to >= ? AND b.seq_from <= ?"
)

#: Receives each envelope's new events: (store, stream, epoch, events in seq order).
EmitEvents = Callable[[str, str, str, list[EventHeader]], None]


def _events_of(payload: bytes, envelope: EnvelopeHeaders) -> list[EventHeader]:
    """An envelope's events whole: its JSON parsed again, with the header fields as
    :class:`EnvelopeHeaders` validated them (the parse never decides seq or type). Raises
    ValueError if the payload does not parse as the envelope it was validated as."""
    try:
        events = json.loads(payload)["events"]
        whole = [{**event, **header} for event, header in zip(events, envelope.events, strict=True)]
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"envelope events do not parse as validated: {exc}") from exc
    return cast("list[EventHeader]", whole)


def _refusal(envelope: EnvelopeHeaders, payload: bytes, origin: Origin | None) -> str | None:
    """Why a valid envelope is refused all the same (None: it is not)."""
    try:
        check_origin(envelope.store, envelope.stream, origin)
    except ValueError as exc:
        return str(exc)
    if (b"NaN" in payload or b"Infinity" in payload) and not finite_json(payload):
        return "NaN or Infinity is not JSON"  # SQLite's JSON functions (hq_events) refuse them
    return None


class HqConsumer:
    """Stores envelopes and answers with acks; ``emit`` gets each envelope's new events."""

    def __init__(
        self,
        database: Database,
        *,
        topic_prefix: str = "retail/v1/",
        emit: EmitEvents | None = None,
        now: Callable[[], str],
    ) -> None:
        self._db = database
        self._prefix = topic_prefix
        self._emit = emit
        self._now = now
        self._custody: dict[Key, Ledger] = {}
        self._reported_gaps: dict[Key, tuple[int, int] | None] = {}
        self._deferring: set[Key] = set()  # keys whose events waited for room (logged)
        self.stored = 0
        self.duplicates = 0
        self.rejected = 0
        self.expired = 0  # events the stores' TTLs dropped before HQ had them
        # Per key: seqs that arrived again with another id than the one stored.
        self.conflicts: dict[_Key, set[int]] = {}

    async def load(self) -> None:
        for row in await self._db.fetchall("SELECT store, stream, epoch, seq FROM hq_watermarks"):
            key = (str(row["store"]), str(row["stream"]), str(row["epoch"]))
            self._custody[key] = Ledger(int(row["seq"]))
        for row in await self._db.fetchall(
            "SELECT b.store, b.stream, b.epoch, e.value ->> '$.seq' AS seq, "
            "e.value ->> '$.type' AS type, e.value ->> '$.from_seq' AS first "
            "FROM hq_batches b LEFT JOIN hq_watermarks w USING (store, stream, epoch), "
            "json_each(b.payload, '$.events') e WHERE b.seq_to > coalesce(w.seq, 0) "
            "ORDER BY 1, 2, 3, 4"
        ):
            seq = int(row["seq"])
            if seq <= self.watermark(row["store"], row["stream"], row["epoch"]):
                continue
            key = (str(row["store"]), str(row["stream"]), str(row["epoch"]))
            ledger = self._custody.setdefault(key, Ledger())
            ledger.stored.append((seq, seq))
            first = row["first"]
            if row["type"] == EXPIRED and type(first) is int and 1 <= first <= seq:
                ledger.expired.append((first, seq))
        for ledger in self._custody.values():
            ledger.advance()

    def watermark(self, store: str, stream: str, epoch: str) -> int:
        custody = self._custody.get((store, stream, epoch))
        return 0 if custody is None else custody.watermark

    async def receive(self, payload: bytes) -> Ack | None:
        """Store an envelope's new events; the returned ack may be published once this returns
        (the events are committed). Garbage is logged and dropped (None)."""
        acks = await self.receive_many([payload])
        return acks[0] if acks else None

    async def receive_many(
        self, payloads: list[bytes], *, origins: Sequence[Origin] | None = None
    ) -> list[Ack]:
        """Store several envelopes in one commit; returns one ack per (store, stream, epoch)
        they touched, to publish once this returns. Garbage (an envelope not of its topic's
        store and stream in ``origins`` too) is logged and skipped; if anything fails before
        the commit is done, nothing is acked and nothing is remembered (the broker
        redelivers)."""
        snapshots: dict[Key, Ledger] = {}
        statements: list[tuple[str, tuple[Any, ...]]] = []
        emitted: list[tuple[EnvelopeHeaders, list[EventHeader]]] = []
        repeated: dict[_Key, dict[int, str]] = {}  # seqs held already: the ids they came with
        new_events = 0
        try:  # anything going wrong before the commit: the custody taken is forgotten
            for index, payload in enumerate(payloads):
                origin = None if origins is None else origins[index]
                staged = self._stage(payload, origin, snapshots, repeated)
                if staged is None:
                    continue
                envelope, row, fresh = staged
                statements.append((_STORE_BATCH, row))
                new_events += len(envelope.events) if fresh is None else len(fresh)
                if self._emit is not None:
                    emitted.append((envelope, self._emittable(payload, envelope, fresh)))
            # Watermarks with the events, in one transaction: separate writes may land in
            # separate commits (the writer groups by count), and a failed one before a
            # committed one would leave a watermark over events never stored, acked after a
            # restart.
            statements.extend(
                (_STORE_WATERMARK, (*key, self._custody[key].watermark)) for key in snapshots
            )
            if statements:
                await self._db.submit_atomic(statements, weight=len(statements))
        except BaseException:
            self._custody.update(snapshots)  # not stored: forget
            raise
        self.stored += new_events
        if self._emit is not None:
            for envelope, fresh in emitted:
                self._emit(envelope.store, envelope.stream, envelope.epoch, fresh)
        for key, ids in repeated.items():
            try:
                await self._check_repeated(key, ids)
            except StorageError as exc:  # the events are committed: the acks must go out
                _LOGGER.warning("cannot compare repeated seqs of %s/%s epoch %s: %s", *key, exc)
        acks = []
        for key in snapshots:
            ledger = self._custody[key]
            self._report_gap(key, ledger)
            if ledger.watermark:
                acks.append(ack_for(self._prefix, key, ledger.watermark))
        return acks

    def _stage(
        self,
        payload: bytes,
        origin: Origin | None,
        snapshots: dict[Key, Ledger],
        repeated: dict[_Key, dict[int, str]],
    ) -> tuple[EnvelopeHeaders, tuple[Any, ...], list[EventHeader] | None] | None:
        """Check an envelope and take its new events into custody (a snapshot of the custody
        before is kept in ``snapshots``, to forget them if the commit fails; the ids of seqs
        held already go to ``repeated``). Returns the envelope, its ``hq_batches`` row and its
        new events (None: all of them, not parsed); None for garbage or an envelope holding
        nothing new."""
        try:
            # The envelope checked whole, its events' own fields not made into objects: the
            # usual envelope is stored as it came.
            envelope = EnvelopeHeaders.model_validate_json(payload)
        except ValidationError as exc:
            self.rejected += 1
            _LOGGER.warning("rejected envelope: %s", exc.errors(include_url=False)[:3])
            return None
        reason = _refusal(envelope, payload, origin)
        if reason is not None:
            self.rejected += 1
            _LOGGER.warning("rejected envelope: %s", reason)
            return None
        key = (envelope.store, envelope.stream, envelope.epoch)
        ledger = self._custody.setdefault(key, Ledger())
        if key not in snapshots:
            snapshots[key] = ledger.copy()
        seqs = [event["seq"] for event in envelope.events]
        if ledger.take_run(seqs, markers=any(e["type"] == EXPIRED for e in envelope.events)):
            # Stored as it came, one row per envelope (the hq_events view lists the events).
            first, last = envelope.events[0]["seq"], envelope.events[-1]["seq"]
            return envelope, (*key, first, last, self._now(), payload.decode()), None
        try:
            events = _events_of(payload, envelope)
        except ValueError as exc:
            self.rejected += 1
            _LOGGER.warning("rejected envelope: %s", exc)
            return None
        fresh = self._take_fresh(key, ledger, events, repeated.setdefault(key, {}))
        if not fresh:
            return None
        # Some were held already: a trimmed copy.
        text = json.dumps({"events": fresh}, ensure_ascii=False)
        return envelope, (*key, fresh[0]["seq"], fresh[-1]["seq"], self._now(), text), fresh

    @staticmethod
    def _emittable(
        payload: bytes, envelope: EnvelopeHeaders, fresh: list[EventHeader] | None
    ) -> list[EventHeader]:
        """The new events for ``emit``: all of the envelope's when ``fresh`` is None."""
        if fresh is not None:
            return fresh
        try:
            return _events_of(payload, envelope)
        except ValueError:  # stored as it came all the same; the headers are what is known
            return list(envelope.events)

    def _take_fresh(
        self, key: Key, ledger: Ledger, events: list[EventHeader], repeated: dict[int, str]
    ) -> list[EventHeader]:
        """Of the envelope's ``events`` (whole), those HQ does not hold yet, in seq order;
        moves the watermark. The ids of the others go to ``repeated`` (by seq)."""
        rows = sorted((EventRow.of(cast("dict[str, Any]", e)) for e in events), key=_by_seq)
        taken = ledger.take(rows)
        self.duplicates += len(rows) - len(taken.fresh) - len(taken.deferred)
        self.expired += taken.expired
        warn_expired(_LOGGER, key, taken.markers)
        if taken.deferred and key not in self._deferring:  # once per key
            self._deferring.add(key)
            warn_deferred(_LOGGER, key, taken.deferred)
        fresh_seqs = {row.seq for row in taken.fresh}
        for row in taken.repeated:
            if row.seq not in fresh_seqs:  # twice in this envelope: compared when stored
                repeated.setdefault(row.seq, row.id)
        return [cast("EventHeader", row.event_object) for row in taken.fresh]

    async def _check_repeated(self, key: _Key, ids: dict[int, str]) -> None:
        """Compare the ids seqs held already came with to the stored ones: another id is a
        conflict (counted once per seq, logged when new ones appear)."""
        if not ids:
            return
        rows = await self._db.fetchall(_HELD_IDS, (*key, min(ids), max(ids)))
        known = self.conflicts.get(key, set())
        new = sorted(
            int(row["seq"])
            for row in rows
            if row["seq"] in ids and ids[row["seq"]] != row["id"] and row["seq"] not in known
        )
        if not new:
            return
        self.conflicts.setdefault(key, set()).update(new)
        _LOGGER.warning(
            "conflict in %s/%s epoch %s: %d event(s) came with seqs HQ holds under other ids "
            "(seq %d..%d, %d in all): the store's database went back in time? They are not "
            "stored under those seqs; a current store re-sends them under a new epoch",
            *key,
            len(new),
            new[0],
            new[-1],
            len(self.conflicts[key]),
        )

    def gaps(self) -> dict[tuple[str, str, str], tuple[int, int]]:
        """Per key, the first missing range above the watermark."""
        found = {}
        for key, ledger in self._custody.items():
            gap = ledger.first_gap()
            if gap is not None:
                found[key] = gap
        return found

    def _report_gap(self, key: Key, ledger: Ledger) -> None:
        gap = ledger.first_gap()
        if gap != self._reported_gaps.get(key):
            self._reported_gaps[key] = gap
            if gap is not None:
                _LOGGER.warning("gap in %s/%s epoch %s: seq %d..%d missing", *key, *gap)
            else:
                _LOGGER.info("gap in %s/%s epoch %s closed", *key)


def _by_seq(row: EventRow) -> int:
    return row.seq
