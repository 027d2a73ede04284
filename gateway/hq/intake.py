"""What HQ does with an envelope, without I/O: read it, decide which events are new, move the
contiguous custody watermark, build the ``down/ack``. Both HQ sinks (SQLite, PostgreSQL) use it.

- :func:`read_envelope` checks an ``up/{stream}`` payload and turns it into :class:`EventRow`
  values (garbage raises :class:`ValueError` with the reason: it is logged and dropped, never
  stored — a half-readable envelope must not poison a batch that is retried forever).
- :class:`Ledger` is one ``(store, stream, epoch)``'s custody: the watermark (every seq up to it
  is accounted for) and the ranges accounted for above it — stored events, and the seqs an
  ``outbox.expired`` marker stands for. :meth:`Ledger.take` splits events into new ones and
  repeated ones (held already: a duplicate, or a conflict when the id differs).
- :func:`ack_for` is the ``down/ack`` message for a watermark.
- :func:`envelope_origin` is the ``(store, stream)`` an ``up/`` topic speaks for, and
  :func:`check_origin` holds an envelope to it: the broker's ACL lets a store publish on its own
  topics only, and the envelope's own ``store`` must not get around that (HQ would store, and
  ack, another store's seqs; that store's real events would become conflicts, acked and lost).

The PostgreSQL sink loads each key's ledger from the database under a row lock, lets it decide,
and writes it back in the same transaction: the watermark acked is the one committed, whatever
other consumers sharing the load did meanwhile.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
from pydantic import ValidationError

from gateway.wire.envelope import EnvelopeHeaders

__all__ = [
    "EXPIRED",
    "MAX_RANGES",
    "Ack",
    "EventRow",
    "Key",
    "Ledger",
    "ack_for",
    "check_origin",
    "envelope_origin",
    "finite_json",
    "read_envelope",
    "warn_deferred",
    "warn_expired",
]

EXPIRED = "outbox.expired"

Key = tuple[str, str, str]  # (store, stream, epoch)
Origin = tuple[str, str]  # (store, stream) of the topic an envelope came on

#: Ranges held above the watermark (stored and expired), at most. They are read and written
#: back with every batch of their key, so holes (a store's bug, or a hostile store sending
#: every other seq) must not make them grow without bound — each take would cost more, the
#: whole quadratic. An event that would open another range waits: not stored, so not acked,
#: and the store sends it again once the holes below are filled. Legitimate holes come from
#: envelopes in flight to different consumers: far fewer (``hq_window_messages``, 100).
MAX_RANGES = 1024

# ``up/`` topics that carry no envelope: the health snapshot, price resync requests.
_NOT_STREAMS = frozenset({"health", "sync"})

# Integers of 20 digits or more may not fit 64 bits: orjson would read them as floats. Found
# by mapping every digit to "0" and looking for a run (a regex scan costs 10x more).
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 20


@dataclass(frozen=True, slots=True)
class Ack:
    topic: str
    payload: bytes


def ack_for(topic_prefix: str, key: Key, watermark: int) -> Ack:
    store, stream, epoch = key
    body = {"stream": stream, "epoch": epoch, "seq": watermark}
    return Ack(f"{topic_prefix}{store}/down/ack", json.dumps(body, separators=(",", ":")).encode())


def envelope_origin(topic: str, prefix: str) -> Origin | None:
    """``(store, stream)`` of ``{prefix}{store}/up/{stream}``; None for any other topic (``up/
    health``, ``up/sync``, ``up/reply/…``): not an envelope."""
    if not topic.startswith(prefix):
        return None
    parts = topic[len(prefix) :].split("/")
    if len(parts) != 3 or parts[1] != "up" or parts[2] in _NOT_STREAMS or not all(parts):
        return None
    return parts[0], parts[2]


def check_origin(store: str, stream: str, origin: Origin | None) -> None:
    """ValueError unless the envelope's ``store`` and ``stream`` are its topic's (``origin``;
    None: not known, as for a payload handed over directly)."""
    if origin is not None and (store, stream) != origin:
        raise ValueError(
            f"envelope of {store}/{stream} came on the topic of {origin[0]}/{origin[1]}"
        )


class EventRow(NamedTuple):
    """One event as HQ stores it: its header, the whole event as JSON text, and for an
    ``outbox.expired`` marker the first seq it stands for (None: not a marker, or malformed).
    A named tuple: made for every event received, at a fifth of a frozen dataclass's cost."""

    seq: int
    id: str
    ts: str
    type: str
    event: str
    event_object: dict[str, Any]
    covers_from: int | None = None

    @classmethod
    def of(cls, obj: dict[str, Any], text: str = "") -> EventRow:
        """The row of a whole event whose header is validated (``text``: its JSON, if made)."""
        first = None
        if obj["type"] == EXPIRED:
            first = obj.get("from_seq")
            if type(first) is not int or not 1 <= first <= obj["seq"]:
                first = None
        return cls(obj["seq"], obj["id"], obj["ts"], obj["type"], text, obj, first)


@dataclass(frozen=True, slots=True)
class ReadEnvelope:
    key: Key
    events: list[EventRow]


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def finite_json(payload: bytes) -> bool:
    """False if ``payload`` holds NaN or an infinity as a number (not inside a string)."""
    try:
        json.loads(payload, parse_constant=_refuse_constant)
    except ValueError:
        return False
    return True


def read_envelope(payload: bytes, origin: Origin | None = None) -> ReadEnvelope:
    """The envelope's key and events, in seq order; ValueError (with the reason) for garbage:
    not the envelope schema, not the store and stream of its topic (``origin``), not strict
    JSON (NaN, Infinity), a NUL character or an unpaired surrogate anywhere (a database's text
    refuses them)."""
    try:
        headers = EnvelopeHeaders.model_validate_json(payload)
    except ValidationError as exc:
        raise ValueError(str(exc.errors(include_url=False)[:3])) from None
    check_origin(headers.store, headers.stream, origin)
    try:
        if _LONG_RUN in payload.translate(_DIGITS_AS_ZERO):
            raw = json.loads(payload, parse_constant=_refuse_constant)
        else:
            raw = orjson.loads(payload)
        objects = raw["events"]
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"not strict JSON: {exc}") from None
    if "\x00" in headers.epoch:
        raise ValueError("NUL character in the epoch")
    rows = []
    for header, whole in zip(headers.events, objects, strict=True):
        obj = {**whole, **header}  # the validated header fields win
        rows.append(EventRow.of(obj, _event_text(obj)))
    rows.sort(key=lambda row: row.seq)
    return ReadEnvelope((headers.store, headers.stream, headers.epoch), rows)


def _event_text(obj: dict[str, Any]) -> str:
    try:
        text = orjson.dumps(obj).decode()
    except TypeError:  # an integer beyond 64 bits: the standard library keeps it exact
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
        try:
            text.encode()
        except UnicodeEncodeError:
            raise ValueError("an unpaired surrogate in an event") from None
    if "\\u0000" in text:
        raise ValueError("NUL character in an event")
    return text


@dataclass(frozen=True, slots=True)
class Taken:
    fresh: list[EventRow]  # new: to store
    repeated: list[EventRow]  # held already (compare ids: another id is a conflict)
    expired: int  # events newly reported lost by the store's TTL (markers' counts)
    markers: list[EventRow] = field(default_factory=list)  # the new expiry markers
    deferred: list[EventRow] = field(default_factory=list)  # beyond MAX_RANGES: not taken


def warn_expired(logger: logging.Logger, key: Key, markers: list[EventRow]) -> None:
    """Log each new expiry marker (events lost to the store's TTL), or a malformed one."""
    store, stream, _epoch = key
    for row in markers:
        extra = row.event_object
        if row.covers_from is None:
            logger.warning("ignoring malformed outbox.expired marker at seq %d", row.seq)
            continue
        logger.warning(
            "%s/%s: the store's TTL expired %s event(s) of seq %d..%d (%s..%s); "
            "those not received before are lost",
            store,
            stream,
            extra.get("count"),
            row.covers_from,
            row.seq,
            extra.get("oldest_ts"),
            extra.get("newest_ts"),
        )


def warn_deferred(logger: logging.Logger, key: Key, deferred: list[EventRow]) -> None:
    """Log events left waiting because their key has MAX_RANGES holes above its watermark."""
    store, stream, epoch = key
    logger.warning(
        "%s/%s epoch %s: %d hole(s) above the watermark already; %d event(s) from seq %d "
        "wait (not stored, not acked) until the store re-sends them in order",
        store,
        stream,
        epoch,
        MAX_RANGES,
        len(deferred),
        deferred[0].seq,
    )


@dataclass(slots=True)
class Ledger:
    """One key's custody: ``watermark`` and the ranges accounted for above it."""

    watermark: int = 0
    stored: list[tuple[int, int]] = field(default_factory=list)
    expired: list[tuple[int, int]] = field(default_factory=list)

    def holds(self, seq: int) -> bool:
        return seq <= self.watermark or any(first <= seq <= last for first, last in self.stored)

    def take_run(self, seqs: Sequence[int], *, markers: bool) -> bool:
        """The usual case, decided on the seqs alone: the next events in order, nothing held
        above the watermark, no expiry marker. If so, the watermark moves to the last."""
        if (
            not markers
            and not self.stored
            and not self.expired
            and seqs[0] == self.watermark + 1
            and seqs[-1] - seqs[0] + 1 == len(seqs)
            and all(seq == seqs[0] + n for n, seq in enumerate(seqs))
        ):
            self.watermark = seqs[-1]
            return True
        return False

    def take(self, events: list[EventRow]) -> Taken:
        """Split ``events`` (in seq order) into new and repeated ones; the new ones and the
        markers' ranges become accounted for, and the watermark moves over what joins it."""
        if self.take_run(
            [row.seq for row in events], markers=any(row.type == EXPIRED for row in events)
        ):
            return Taken(list(events), [], 0)
        fresh: list[EventRow] = []
        repeated: list[EventRow] = []
        markers: list[EventRow] = []
        deferred: list[EventRow] = []
        held_markers: list[EventRow] = []
        lost = 0
        for row in events:
            if self.holds(row.seq):
                # An expiry marker may take a seq HQ holds (sent, not acked, then expired at
                # the store): the event held stays valid, and that is no conflict.
                if row.type != EXPIRED:
                    repeated.append(row)
                elif row.covers_from is not None and row.seq > self.watermark:
                    held_markers.append(row)  # its range counts all the same
                continue
            if not self._room_for(row):
                deferred.append(row)
                continue
            fresh.append(row)
            self._add(self.stored, row.seq, row.seq)
            if row.type == EXPIRED:
                markers.append(row)
                count = row.event_object.get("count")
                lost += count if type(count) is int and row.covers_from is not None else 0
            if row.covers_from is not None:
                self._add(self.expired, row.covers_from, row.seq)
        for row in held_markers:
            assert row.covers_from is not None
            self._add(self.expired, row.covers_from, row.seq)
        self.advance()
        return Taken(fresh, repeated, lost, markers, deferred)

    def _room_for(self, row: EventRow) -> bool:
        """Whether ``row`` may be taken: it opens no new range, or there is room for one."""
        ranges = (*self.stored, *self.expired)
        if len(ranges) < MAX_RANGES - 1:  # a marker may open two
            return True
        first = row.seq if row.covers_from is None else row.covers_from
        return first <= self.watermark + 1 or any(
            low - 1 <= row.seq and first <= high + 1 for low, high in ranges
        )

    def copy(self) -> Ledger:
        return Ledger(self.watermark, list(self.stored), list(self.expired))

    @staticmethod
    def _add(ranges: list[tuple[int, int]], first: int, last: int) -> None:
        if ranges and ranges[-1][1] + 1 == first:
            ranges[-1] = (ranges[-1][0], last)
        else:
            ranges.append((first, last))

    def advance(self) -> None:
        """Move the watermark over every range that joins it; forget ranges below it."""
        moved = True
        while moved:
            moved = False
            for first, last in (*self.stored, *self.expired):
                if first <= self.watermark + 1 and last > self.watermark:
                    self.watermark = last
                    moved = True
        self.stored = _merged([r for r in self.stored if r[1] > self.watermark])
        self.expired = _merged([r for r in self.expired if r[1] > self.watermark])

    def first_gap(self) -> tuple[int, int] | None:
        waiting = [first for first, _ in (*self.stored, *self.expired)]
        return (self.watermark + 1, min(waiting) - 1) if waiting else None


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(last, merged[-1][1]))
        else:
            merged.append((first, last))
    return merged
