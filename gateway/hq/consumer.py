"""The reference HQ consumer: store every event durably and de-duplicated, then take custody.

For each ``(store, stream, epoch)`` it keeps the contiguous watermark (every seq up to it is
stored) and the seqs stored above it. An envelope's new events are committed *before* the ack
``{stream, epoch, seq: watermark}`` is published on ``retail/v1/{store}/down/ack`` — that order
is the whole custody contract (docs/protocol.md). Missing seqs above the watermark are reported
as gaps (they arrive later: the gateway re-sends from the watermark). An ``outbox.expired``
marker stands for the seqs ``from_seq..seq`` that the gateway's TTL dropped before HQ had them:
they count as accounted for, so the watermark passes them (and the loss is logged and counted).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.store.database import Database
from gateway.store.migrations import MIGRATIONS, Migration

__all__ = ["HQ_MIGRATIONS", "Ack", "EnvelopeModel", "HqConsumer"]

_LOGGER = logging.getLogger(__name__)

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
)


class _EventModel(BaseModel):
    model_config = ConfigDict(extra="allow")
    seq: int = Field(ge=1, lt=2**63)
    id: str = Field(min_length=1, max_length=64)
    ts: str = Field(min_length=1, max_length=64)
    type: str = Field(min_length=1, max_length=128)


class EnvelopeModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    v: int = Field(ge=1, le=1)
    type: str
    store: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    stream: str = Field(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_]*$")
    epoch: str = Field(min_length=1, max_length=64)
    boot: int = Field(ge=0)
    seq_from: int = Field(ge=1)
    seq_to: int = Field(ge=1)
    sent_at: str
    events: list[_EventModel] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class Ack:
    topic: str
    payload: bytes


_EXPIRED = "outbox.expired"


@dataclass(slots=True)
class _Custody:
    watermark: int = 0
    above: set[int] = field(default_factory=set)
    covered: dict[int, int] = field(default_factory=dict)  # expired ranges: from_seq -> seq
    reported_gap: tuple[int, int] | None = None

    def cover(self, first: int, last: int) -> None:
        if last > self.watermark:
            self.covered[first] = max(last, self.covered.get(first, last))

    def advance(self) -> None:
        """Move the watermark over every stored seq and expired range that joins it."""
        while True:
            following = self.watermark + 1
            if following in self.above:
                self.above.discard(following)
                self.watermark = following
                continue
            reach = max(
                (last for first, last in self.covered.items() if first <= following), default=0
            )
            if reach < following:
                self.covered = {f: t for f, t in self.covered.items() if t > self.watermark}
                return
            self.watermark = reach
            self.covered = {f: t for f, t in self.covered.items() if t > reach}
            self.above = {seq for seq in self.above if seq > reach}

    def first_gap(self) -> tuple[int, int] | None:
        waiting = [*self.covered, *self.above]
        return (self.watermark + 1, min(waiting) - 1) if waiting else None


class HqConsumer:
    """Stores envelopes and answers with acks; ``emit`` gets each new event (JSON-ready)."""

    def __init__(
        self,
        database: Database,
        *,
        topic_prefix: str = "retail/v1/",
        emit: Callable[[dict[str, Any]], None] | None = None,
        now: Callable[[], str],
    ) -> None:
        self._db = database
        self._prefix = topic_prefix
        self._emit = emit or (lambda _event: None)
        self._now = now
        self._custody: dict[tuple[str, str, str], _Custody] = {}
        self.stored = 0
        self.duplicates = 0
        self.rejected = 0
        self.expired = 0  # events the stores' TTLs dropped before HQ had them

    async def load(self) -> None:
        for row in await self._db.fetchall("SELECT store, stream, epoch, seq FROM hq_watermarks"):
            key = (str(row["store"]), str(row["stream"]), str(row["epoch"]))
            self._custody[key] = _Custody(int(row["seq"]))
        for row in await self._db.fetchall(
            "SELECT e.store, e.stream, e.epoch, e.seq, e.type, e.event ->> '$.from_seq' AS first "
            "FROM hq_events e LEFT JOIN hq_watermarks w "
            "USING (store, stream, epoch) WHERE e.seq > coalesce(w.seq, 0)"
        ):
            key = (str(row["store"]), str(row["stream"]), str(row["epoch"]))
            custody = self._custody.setdefault(key, _Custody())
            custody.above.add(int(row["seq"]))
            if row["type"] == _EXPIRED and isinstance(row["first"], int):
                custody.cover(row["first"], int(row["seq"]))
        for custody in self._custody.values():
            custody.advance()

    def watermark(self, store: str, stream: str, epoch: str) -> int:
        custody = self._custody.get((store, stream, epoch))
        return 0 if custody is None else custody.watermark

    async def receive(self, payload: bytes) -> Ack | None:
        """Store an envelope's new events; the returned ack may be published once this returns
        (the events are committed). Garbage is logged and dropped (None)."""
        try:
            envelope = EnvelopeModel.model_validate_json(payload)
        except ValidationError as exc:
            self.rejected += 1
            _LOGGER.warning("rejected envelope: %s", exc.errors(include_url=False)[:3])
            return None
        key = (envelope.store, envelope.stream, envelope.epoch)
        custody = self._custody.setdefault(key, _Custody())
        received_at = self._now()
        fresh = []
        for event in envelope.events:
            if event.type == _EXPIRED:
                self._take_expired(envelope.store, envelope.stream, custody, event)
            if event.seq <= custody.watermark or event.seq in custody.above:
                self.duplicates += 1
                continue
            custody.above.add(event.seq)
            fresh.append(event)
        custody.advance()
        rows = [
            (
                *key,
                event.seq,
                event.id,
                event.ts,
                event.type,
                json.dumps(event.model_dump(), separators=(",", ":")),
                received_at,
            )
            for event in fresh
        ]
        try:
            if rows:
                await self._db.write_many(
                    "INSERT OR IGNORE INTO hq_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
                )
            await self._db.write(
                "INSERT INTO hq_watermarks VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE "
                "SET seq = max(seq, excluded.seq)",
                (*key, custody.watermark),
            )
        except Exception:
            for event in fresh:  # not stored: forget them so a re-send is taken
                custody.above.discard(event.seq)
            raise
        self.stored += len(fresh)
        for event in fresh:
            self._emit(
                {
                    "store": envelope.store,
                    "stream": envelope.stream,
                    "epoch": envelope.epoch,
                    **event.model_dump(),
                }
            )
        self._report_gap(key, custody)
        if custody.watermark == 0:
            return None
        ack = {"stream": envelope.stream, "epoch": envelope.epoch, "seq": custody.watermark}
        return Ack(
            f"{self._prefix}{envelope.store}/down/ack",
            json.dumps(ack, separators=(",", ":")).encode(),
        )

    def gaps(self) -> dict[tuple[str, str, str], tuple[int, int]]:
        """Per key, the first missing range above the watermark."""
        found = {}
        for key, custody in self._custody.items():
            gap = custody.first_gap()
            if gap is not None:
                found[key] = gap
        return found

    def _take_expired(self, store: str, stream: str, custody: _Custody, event: Any) -> None:
        extra = event.model_extra or {}
        first, count = extra.get("from_seq"), extra.get("count")
        if not isinstance(first, int) or not 1 <= first <= event.seq:
            _LOGGER.warning("ignoring malformed outbox.expired marker at seq %d", event.seq)
            return
        if event.seq > custody.watermark and (first, event.seq) not in custody.covered.items():
            if event.seq not in custody.above:
                self.expired += count if isinstance(count, int) else 0
                _LOGGER.warning(
                    "%s/%s: the store's TTL expired %s event(s) of seq %d..%d (%s..%s); "
                    "those not received before are lost",
                    store,
                    stream,
                    count,
                    first,
                    event.seq,
                    extra.get("oldest_ts"),
                    extra.get("newest_ts"),
                )
            custody.cover(first, event.seq)

    def _report_gap(self, key: tuple[str, str, str], custody: _Custody) -> None:
        gap = custody.first_gap()
        if gap != custody.reported_gap:
            custody.reported_gap = gap
            if gap is not None:
                _LOGGER.warning("gap in %s/%s epoch %s: seq %d..%d missing", *key, *gap)
            else:
                _LOGGER.info("gap in %s/%s epoch %s closed", *key)
