"""The uplink wire contract as pydantic models: the one source of truth for its JSON Schemas.

Every message the gateway exchanges with HQ has a model here: the retained ``state`` birth and
death, the ``up/{stream}`` envelope and the header every event carries, one model per event
type (:data:`EVENT_TYPES`), HQ's ``down/ack`` and the ``up/health`` snapshot.
docs/protocol.md carries their JSON Schemas in a generated block; ``python -m gateway.events``
rewrites it (``--check`` exits 1 when it is stale), and a test fails when a model changed
without it.

Two strengths of validation, on purpose:

- :class:`EnvelopeModel` with :class:`EventHeader` is what the reference HQ consumer accepts:
  an exact envelope, and events checked only for their header (the rest is kept as it came, so
  an event type HQ does not know yet is stored, never refused). It is fast: the events are a
  TypedDict validated in C.
- :func:`validate_envelope` and :func:`validate_event` check everything the gateway promises:
  each event against its type's model (unknown types refused), strict JSON types (``41.0`` is
  not a seq) and consecutive seqs matching ``seq_from``/``seq_to``.

A new event type (stock, dwell, receipts…) is a subclass of :class:`EventBody` with its own
fields and an example, added to :data:`EVENT_TYPES`; then regenerate the docs.
"""

from __future__ import annotations

import argparse
import functools
import json
import operator
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Self, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    create_model,
    model_validator,
)
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

__all__ = [
    "BEGIN_MARKER",
    "END_MARKER",
    "EVENT_TYPES",
    "AckMessage",
    "AlertCleared",
    "AlertRaised",
    "BufferReport",
    "DriverReport",
    "EnvelopeHeaders",
    "EnvelopeModel",
    "EventBody",
    "EventFields",
    "EventHeader",
    "HealthSnapshot",
    "HealthStream",
    "LastHqAck",
    "LinkReport",
    "OutboxExpired",
    "StateMessage",
    "StockActivity",
    "StockAmbiguous",
    "StockChanged",
    "documented_examples",
    "event_model",
    "main",
    "protocol_schemas_markdown",
    "replace_generated",
    "validate_envelope",
    "validate_event",
]

BEGIN_MARKER = "<!-- BEGIN GENERATED SCHEMAS (python -m gateway.events) -->"
END_MARKER = "<!-- END GENERATED SCHEMAS -->"

_DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"


def _no_default(schema: dict[str, Any]) -> None:
    """For optional fields that are absent rather than null: the Python default is no wire
    value, so it stays out of the schema."""
    schema.pop("default", None)


# --- field types, shared by the lenient and the strict models ---------------------------------

_INSTANT_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+00:00$"

#: An instant as the gateway writes it (``gateway.clock.isoformat_utc``).
Instant = Annotated[
    str,
    Field(
        pattern=_INSTANT_PATTERN,
        description="UTC instant with an explicit offset, millisecond precision",
        examples=["2026-11-23T09:00:00.120+00:00"],
        json_schema_extra={"format": "date-time"},
    ),
]
Seq = Annotated[
    int,
    Field(
        ge=1,
        lt=2**63,
        description="Position in the stream: per stream and epoch gapless, strictly increasing",
        examples=[41],
    ),
]
EventId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        description="Random id of the event (16 hex characters), kept when re-sent",
        examples=["5b0e1c2d3f4a5b6c"],
    ),
]
EventTs = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        description="When the event happened (an instant, see `unsynced`)",
        examples=["2026-11-23T09:00:00.120+00:00"],
    ),
]
EventTypeName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        description="Event type, `family.what`; decides the remaining fields",
        examples=["alert.raised"],
    ),
]
StoreId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="Store id (the topic's `{store_id}`)",
        examples=["store-0042"],
    ),
]
StreamName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=32,
        pattern=r"^[a-z][a-z0-9_]*$",
        description="Outbox stream: `stock`, `dwell`, `receipts` or `alerts`",
        examples=["alerts"],
    ),
]
Epoch = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        description="What the seqs count in (16 random hex characters): the gateway "
        "database's epoch, or the stream's own once its database went back in time; a new "
        "epoch starts at seq 1",
        examples=["9f2c4e1a7b3d5c60"],
    ),
]
Boot = Annotated[
    int,
    Field(ge=0, description="Gateway start counter, incremented at every start", examples=[12]),
]
Count = Annotated[int, Field(ge=0)]


# --- the envelope, as HQ accepts it ---------------------------------------------------------


class EventHeader(TypedDict):
    """The fields every event carries, first; the rest are its type's own (see the event
    types), plus `unsynced: true` while the store's clock is not synchronised."""

    # A TypedDict, not a model: validated in C and kept as a dict, at ~2 µs an event.
    __pydantic_config__ = ConfigDict(extra="allow")  # type: ignore[misc]
    seq: Seq
    id: EventId
    ts: EventTs
    type: EventTypeName


class EnvelopeModel(BaseModel):
    """`up/{stream}`, QoS 1: consecutive events of one stream in one message. HQ de-duplicates
    on (store, stream, epoch, seq) and orders by seq, not by arrival."""

    model_config = ConfigDict(extra="forbid")
    v: int = Field(ge=1, le=1, description="Envelope version", examples=[1])
    type: str = Field(description="Always `events`", examples=["events"])
    store: StoreId
    stream: StreamName
    epoch: Epoch
    boot: Boot
    seq_from: int = Field(ge=1, description="`seq` of the first event", examples=[41])
    seq_to: int = Field(ge=1, description="`seq` of the last event", examples=[43])
    sent_at: str = Field(
        description="When the envelope was packed (an instant); re-sends get a new one",
        examples=["2026-11-23T09:00:01.250+00:00"],
    )
    events: list[EventHeader] = Field(
        min_length=1, description="The events, consecutive seqs in increasing order"
    )


class _EventHeaderOnly(TypedDict):
    """:class:`EventHeader` with its other fields checked as JSON but not kept."""

    __pydantic_config__ = ConfigDict(extra="ignore")  # type: ignore[misc]
    seq: Seq
    id: EventId
    ts: EventTs
    type: EventTypeName


class EnvelopeHeaders(EnvelopeModel):
    """:class:`EnvelopeModel`, the same checks, its events read for their headers only: what
    a consumer storing envelopes as they come needs, at less than half the cost (the rest of
    each event is not turned into Python objects)."""

    events: list[_EventHeaderOnly] = Field(min_length=1)


# --- events, exactly ------------------------------------------------------------------------


def _only_true(value: bool) -> bool:
    if value is not True:
        raise ValueError("`unsynced` is only ever true: leave it out when the clock is synced")
    return value


def _only_true_schema(schema: dict[str, Any]) -> None:
    schema["const"] = True
    _no_default(schema)


class EventFields(BaseModel):
    """The header of every event, exactly as the gateway writes it."""

    model_config = ConfigDict(extra="forbid", strict=True)
    seq: Seq
    id: Annotated[EventId, Field(pattern=r"^[0-9a-f]{16}$")]
    ts: Annotated[Instant, Field(description="When the event happened (see `unsynced`)")]
    type: EventTypeName
    unsynced: Annotated[bool, AfterValidator(_only_true)] = Field(
        False,
        description="Present (and true) only while the store's clock is not synchronised: "
        "`ts` may then be far off",
        examples=[True],
        json_schema_extra=_only_true_schema,
    )


class EventBody(BaseModel):
    """Base of an event type's own fields (the header is :class:`EventFields`)."""

    model_config = ConfigDict(extra="forbid", strict=True)


SeverityName = Literal["info", "warning", "critical"]


class AlertRaised(EventBody):
    """Stream `alerts`: an alert became active, or its severity changed. Keyed by condition
    and subject; HQ keeps the active set by `key`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "key": "uplink.refused:receipts",
                    "severity": "critical",
                    "message": "broker refuses stream receipts; events stay buffered: broker "
                    "refused publish to retail/v1/store-0042/up/receipts: 0x87 Not authorized",
                    "raised_at": "2026-11-23T09:00:00.118+00:00",
                    "updated_at": "2026-11-23T09:00:00.118+00:00",
                    "details": {},
                }
            ]
        }
    )
    key: str = Field(
        min_length=1,
        pattern=r"^\S+$",
        description="Condition and subject, no spaces: `condition:subject`",
        examples=["uplink.refused:receipts", "buffer.pressure"],
    )
    severity: SeverityName = Field(description="How bad it is", examples=["critical"])
    message: str = Field(
        description="Human-readable, for the operator",
        examples=["broker refuses stream receipts; events stay buffered"],
    )
    raised_at: Instant = Field(description="When the alert became active")
    updated_at: Instant = Field(description="Last change of severity or details")
    details: dict[str, Any] = Field(
        description="Condition-specific facts (counts, names); may be empty",
        examples=[{"shed": {"dwell/dwell.visit": 120}, "refused": {}}],
    )


class AlertCleared(AlertRaised):
    """Stream `alerts`: an active alert ended; carries the alert as it last was."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "key": "uplink.refused:receipts",
                    "severity": "critical",
                    "message": "broker refuses stream receipts; events stay buffered",
                    "raised_at": "2026-11-23T09:00:00.118+00:00",
                    "updated_at": "2026-11-23T09:00:00.118+00:00",
                    "details": {},
                    "cleared_at": "2026-11-23T09:05:12.004+00:00",
                    "clear_message": "broker accepts it again",
                }
            ]
        }
    )
    cleared_at: Instant = Field(description="When the alert ended")
    clear_message: str = Field(
        "",
        min_length=1,
        description="Why it ended; absent when nothing was said",
        examples=["broker accepts it again"],
        json_schema_extra=_no_default,
    )


class OutboxExpired(EventBody):
    """Any stream: stands for events the stream's TTL expired before HQ took them. Its own
    `seq` is the last seq it covers, so it accounts for seqs `from_seq`..`seq`; HQ's
    watermark passes them (those not received before are lost). Markers may arrive more than
    once and overlap: a later one may fold an earlier one in (lower `from_seq`, counts summed)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "from_seq": 37,
                    "count": 7,
                    "reason": "ttl",
                    "oldest_ts": "2026-11-16T08:59:58.002+00:00",
                    "newest_ts": "2026-11-23T09:00:00.120+00:00",
                }
            ]
        }
    )
    from_seq: int = Field(ge=1, description="First seq covered", examples=[37])
    count: int = Field(ge=1, description="How many events expired", examples=[7])
    reason: Literal["ttl"] = Field(description="Why they were dropped", examples=["ttl"])
    oldest_ts: Instant = Field(description="`ts` of the oldest expired event")
    newest_ts: Instant = Field(description="`ts` of the newest expired event")

    @model_validator(mode="after")
    def _covers_up_to_own_seq(self) -> Self:
        seq = getattr(self, "seq", None)  # set when validated as a whole event
        if isinstance(seq, int) and self.from_seq > seq:
            raise ValueError(f"from_seq {self.from_seq} is beyond the marker's own seq {seq}")
        if self.oldest_ts > self.newest_ts:  # same format: text order is time order
            raise ValueError("oldest_ts is after newest_ts")
        return self


class PriceStored(EventBody):
    """Stream `receipts`: every part of a price batch version is verified and committed at
    the store (it is then applied in version order, or rejected)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"version": 42, "kind": "delta", "parts": 3}]}
    )
    version: int = Field(ge=1, description="The batch version", examples=[42])
    kind: Literal["full", "delta"] = Field(description="Batch kind", examples=["delta"])
    parts: int = Field(ge=1, description="How many parts it came in", examples=[3])


class PriceApplied(EventBody):
    """Stream `receipts`: a price batch version is in the store's price book (one
    transaction with this receipt)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "version": 42,
                    "kind": "delta",
                    "parts": 1,
                    "items": 120,
                    "deleted": 2,
                    "promotions": 1,
                    "cancelled_promotions": 0,
                    "superseded": [],
                }
            ]
        }
    )
    version: int = Field(ge=1, description="The batch version", examples=[42])
    kind: Literal["full", "delta"] = Field(description="Batch kind", examples=["delta"])
    parts: int = Field(ge=1, description="Parts it came in", examples=[1])
    items: int = Field(ge=0, description="Prices set", examples=[120])
    deleted: int = Field(ge=0, description="SKUs deleted (delta)", examples=[2])
    promotions: int = Field(ge=0, description="Promotions added or replaced", examples=[1])
    cancelled_promotions: int = Field(ge=0, description="Promotions cancelled", examples=[0])
    superseded: list[int] = Field(
        description="Held versions a full batch made moot (their content is never applied)",
        examples=[[]],
    )


class PriceProblem(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    item: str | int = Field(description="SKU, index, promotion id, or `batch`")
    reason: str = Field(description="What is wrong with it")


class PriceRejected(EventBody):
    """Stream `receipts`: a price batch version was not applied. A version with invalid
    content is consumed (the next version follows it, nothing of it is applied); a version
    whose parts did not all arrive in time expires and is asked for again by resync."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "version": 43,
                    "reason": "invalid batch",
                    "problems": [
                        {"item": "4006381333931", "reason": "price: Input should be a string"}
                    ],
                }
            ]
        }
    )
    version: int = Field(ge=1, description="The batch version", examples=[43])
    reason: str = Field(description="`invalid batch` or `incomplete: ...`")
    problems: list[PriceProblem] = Field(description="Every bad item (empty if incomplete)")


class LabelBound(EventBody):
    """Stream `receipts`: a label now shows this SKU (from HQ's `bind`, a technician or the
    store's seed file)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"label": "0000021F3A4B", "sku": "4006381333931", "source": "hq"}]
        }
    )
    label: str = Field(description="Label id", examples=["0000021F3A4B"])
    sku: str = Field(description="The SKU it shows", examples=["4006381333931"])
    source: Literal["hq", "local", "seed"] = Field(
        description="Who bound it: `local` (a technician) overrides HQ, HQ overrides `seed` "
        "(the installation's seed file)"
    )


class LabelUnbound(LabelBound):
    """Stream `receipts`: a label no longer shows a SKU (`sku`: the one it showed)."""


_LABEL_EXAMPLE: dict[str, Any] = {
    "label": "0000021F3A4B5C6D",
    "sku": "4006381333931",
    "price_version": 42,
    "content_hash": "9b1c0e5f3a7d2c4e6f8a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e",
}


class LabelJobReceipt(EventBody):
    """Base of the label job receipts: which label, showing which SKU at which price version,
    with which content (`content_hash`: SHA-256 of the rendered image with its template and
    fonts, as pushed to the ESL system)."""

    label: str = Field(description="Label id", examples=["0000021F3A4B5C6D"])
    sku: str = Field(
        description="The SKU the label shows (empty: the label is unbound and shows the "
        "neutral 'not in use' face)",
        examples=["4006381333931"],
    )
    price_version: int = Field(
        ge=0,
        description="Price batch version of the price shown (0: no price, the label shows "
        "'price unavailable' or, unbound, 'not in use')",
        examples=[42],
    )
    content_hash: str = Field(
        min_length=1,
        description="Identity of the content",
        examples=[_LABEL_EXAMPLE["content_hash"]],
    )


class LabelQueued(LabelJobReceipt):
    """Stream `receipts`: new content for a label is rendered and waits for its ESL driver
    (`reason` present when a confirmed label drifted and is re-pushed, or a technician's
    `label bind` retries a failed delivery)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [_LABEL_EXAMPLE | {"queued_at": "2026-11-23T09:00:00.120+00:00"}]
        }
    )
    queued_at: Instant = Field(description="When it was queued")
    reason: str = Field(
        "",
        min_length=1,
        description="Why content already announced is sent again (a confirmed label "
        "drifted, a failed delivery is retried); absent for new content",
        examples=["label shows 5f3a7d2c4e6f instead of the confirmed content: re-push"],
        json_schema_extra=_no_default,
    )


class LabelConfirmed(LabelJobReceipt):
    """Stream `receipts`: the label itself reported it shows the content — the proof that the
    shelf shows this price. Only the device's confirmation counts, never an access point
    accepting an upload. `unchanged`: the label already showed it, nothing was sent."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                _LABEL_EXAMPLE
                | {
                    "confirmed_at": "2026-11-23T09:00:07.480+00:00",
                    "evidence": "sim: label reported xfer complete",
                    "unchanged": False,
                }
            ]
        }
    )
    confirmed_at: Instant = Field(description="When the label confirmed it (driver time)")
    evidence: str = Field(
        description="The driver's proof in words", examples=["sim: label reported xfer complete"]
    )
    unchanged: bool = Field(description="The label already showed this content", examples=[False])


class LabelFailed(LabelJobReceipt):
    """Stream `receipts`: a delivery attempt failed. Retryable failures are retried with
    backoff (a later `label.confirmed` follows); `permanent` ones need a technician (e.g. a
    label the access point does not know). Content for another panel size is never a
    permanent failure: it is superseded by content drawn for the label's panel."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                _LABEL_EXAMPLE
                | {
                    "failed_at": "2026-11-23T09:00:07.480+00:00",
                    "reason": "sim: xfer timeout, label did not answer",
                    "permanent": False,
                }
            ]
        }
    )
    failed_at: Instant = Field(description="When it failed")
    reason: str = Field(description="Why", examples=["sim: xfer timeout, label did not answer"])
    permanent: bool = Field(description="No retry without a change", examples=[False])


class LabelSuperseded(LabelJobReceipt):
    """Stream `receipts`: newer content replaced this content before the label confirmed it
    (only the latest content of a label is ever sent), or the content was drawn for another
    panel than the label's and is drawn again for it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                _LABEL_EXAMPLE
                | {
                    "superseded_at": "2026-11-23T09:01:00.000+00:00",
                    "reason": "new price version (price version 43)",
                }
            ]
        }
    )
    superseded_at: Instant = Field(description="When it was replaced")
    reason: str = Field(description="What replaced it", examples=["new price version"])


class LabelExpired(EventBody):
    """Stream `receipts`: a scheduled content (a promotion start or end) whose validity ended
    before it was due to be shown — typically after the gateway was down across it; the
    content correct now is queued instead."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                _LABEL_EXAMPLE
                | {
                    "expired_at": "2026-11-23T12:00:00.000+00:00",
                    "reason": "scheduled for 2026-11-23T10:00:00.000+00:00, valid until "
                    "2026-11-23T11:00:00.000+00:00: not shown in time",
                }
            ]
        }
    )
    label: str = Field(description="Label id", examples=["0000021F3A4B5C6D"])
    sku: str = Field(description="The SKU", examples=["4006381333931"])
    price_version: int = Field(ge=0, description="Price version of that content", examples=[42])
    content_hash: str | None = Field(description="Its identity, null if it was never rendered")
    expired_at: Instant = Field(description="When it was dropped")
    reason: str = Field(description="Why")


SlotId = Annotated[
    str, Field(min_length=1, max_length=64, description="Shelf slot id", examples=["aisle3-2-l"])
]
SkuId = Annotated[str, Field(min_length=1, max_length=64, examples=["4006381333931"])]
ItemCount = Annotated[int, Field(ge=0)]


class StockChanged(EventBody):
    """Stream `stock`: a slot's item count changed. `pick` and `put` are counted changes of
    the weight between two stable levels; `recount` is the absolute count (from net weight
    and tray tare) replacing the running one, e.g. after an ambiguous change or at start-up.
    `before`/`after` are null while the count is unknown, never a guess."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "slot": "aisle3-2-l",
                    "sku": "4006381333931",
                    "kind": "pick",
                    "before": 7,
                    "after": 6,
                    "delta": -1,
                    "confidence": 0.98,
                    "grams": -251.3,
                }
            ]
        }
    )
    slot: SlotId
    sku: SkuId
    kind: Literal["pick", "put", "recount"] = Field(description="What happened")
    before: ItemCount | None = Field(description="Count before; null if it was unknown")
    after: ItemCount | None = Field(description="Count after; null if unknown")
    delta: int | None = Field(
        description="Items added (negative: removed); null for a recount from unknown",
        examples=[-1],
    )
    confidence: float = Field(
        ge=0,
        le=1,
        description="1 exactly on a whole number of items, 0.5 at the tolerance's edge",
    )
    grams: float = Field(description="The weight change (recount: the items' weight)")


class StockAmbiguous(EventBody):
    """Stream `stock`: the weight changed by an amount that is not a whole number of items
    within the slot's tolerance (or could be more than one count). Nothing is counted; the
    slot's count is unknown until a recount settles it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "slot": "aisle3-2-l",
                    "sku": "4006381333931",
                    "grams": -376.2,
                    "ratio": -1.505,
                    "candidates": [],
                    "count_before": 7,
                }
            ]
        }
    )
    slot: SlotId
    sku: SkuId
    grams: float = Field(description="The weight change between the two stable levels")
    ratio: float = Field(description="grams / unit weight")
    candidates: list[ItemCount] = Field(
        description="Item counts the change could be (several: undecidable; none: not items)"
    )
    count_before: ItemCount | None = Field(description="The count before, if it was known")


class SlotActivity(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    slot: SlotId
    sku: SkuId
    picks: ItemCount = Field(description="Pick events")
    picked_items: ItemCount = Field(description="Items they took")
    puts: ItemCount = Field(description="Put-back (and restock) events")
    put_items: ItemCount = Field(description="Items they put")
    ambiguous: ItemCount = Field(description="Changes that could not be counted")


class StockActivity(EventBody):
    """Stream `stock`: picks and put-backs per slot over one interval (`[shelves]
    activity_interval_s`); slots without any are left out, an interval without any sends
    nothing."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "start": "2026-11-23T09:00:00.000+00:00",
                    "end": "2026-11-23T09:15:00.000+00:00",
                    "slots": [
                        {
                            "slot": "aisle3-2-l",
                            "sku": "4006381333931",
                            "picks": 5,
                            "picked_items": 6,
                            "puts": 2,
                            "put_items": 2,
                            "ambiguous": 0,
                        }
                    ],
                }
            ]
        }
    )
    start: Instant = Field(description="Start of the interval")
    end: Instant = Field(description="End of the interval")
    slots: list[SlotActivity] = Field(min_length=1)


#: Event type name -> model of its own fields. New features add their types here.
EVENT_TYPES: dict[str, type[EventBody]] = {
    "alert.raised": AlertRaised,
    "alert.cleared": AlertCleared,
    "outbox.expired": OutboxExpired,
    "price.stored": PriceStored,
    "price.applied": PriceApplied,
    "price.rejected": PriceRejected,
    "label.bound": LabelBound,
    "label.unbound": LabelUnbound,
    "label.queued": LabelQueued,
    "label.confirmed": LabelConfirmed,
    "label.failed": LabelFailed,
    "label.superseded": LabelSuperseded,
    "label.expired": LabelExpired,
    "stock.changed": StockChanged,
    "stock.ambiguous": StockAmbiguous,
    "stock.activity": StockActivity,
}

#: The header of the documented example events (one envelope's worth).
_EXAMPLE_HEADER: dict[str, Any] = {
    "seq": 43,
    "id": "5b0e1c2d3f4a5b6c",
    "ts": "2026-11-23T09:00:00.120+00:00",
}


def _examples(model: type[BaseModel]) -> list[dict[str, Any]]:
    extra = model.model_config.get("json_schema_extra")
    found = extra.get("examples") if isinstance(extra, dict) else None
    return [dict(ex) for ex in found if isinstance(ex, dict)] if isinstance(found, list) else []


def event_model(event_type: str) -> type[EventFields]:
    """The model of a whole event of ``event_type`` (header and its own fields); KeyError for
    a type not in :data:`EVENT_TYPES`."""
    return _event_model(event_type, EVENT_TYPES[event_type])


@functools.cache
def _event_model(event_type: str, body: type[EventBody]) -> type[EventFields]:
    examples = [{**_EXAMPLE_HEADER, "type": event_type, **ex} for ex in _examples(body)]
    bases: tuple[type[BaseModel], ...] = (body, EventFields)  # header fields first
    model = create_model(
        body.__name__ + "Event",
        __base__=bases,
        __doc__=body.__doc__,
        __module__=__name__,
        __cls_kwargs__={"json_schema_extra": {"examples": examples}},
        type=(_literal(event_type), Field(description="Event type", examples=[event_type])),
    )
    return cast("type[EventFields]", model)  # a subclass of EventFields, built at run time


def _literal(value: str) -> Any:
    """``Literal[value]`` for a value known only at run time."""
    literal: Any = Literal
    return literal[value]


class _StrictEnvelope(EnvelopeModel):
    model_config = ConfigDict(strict=True)
    type: Literal["events"] = Field(description="Always `events`")
    epoch: Annotated[Epoch, Field(pattern=r"^[0-9a-f]{16}$")]
    boot: Annotated[Boot, Field(ge=1)]
    sent_at: Instant

    @model_validator(mode="after")
    def _consecutive(self) -> Self:
        seqs = [event["seq"] if isinstance(event, dict) else event.seq for event in self.events]
        if seqs != list(range(self.seq_from, self.seq_from + len(seqs))):
            raise ValueError(f"event seqs {seqs[:5]}... are not consecutive from seq_from")
        if seqs[-1] != self.seq_to:
            raise ValueError(f"seq_to {self.seq_to} is not the last event's seq {seqs[-1]}")
        return self


@functools.cache
def _strict_models(types: tuple[tuple[str, type[EventBody]], ...]) -> tuple[Any, Any]:
    """A validator of one event of any of ``types`` (told apart by ``type``), and the strict
    envelope holding such events."""
    models = [_event_model(name, body) for name, body in types]
    union: Any = functools.reduce(operator.or_, models)
    event: Any = Annotated[union, Field(discriminator="type")] if len(models) > 1 else union
    envelope = create_model(
        "StrictEnvelope",
        __base__=_StrictEnvelope,
        __module__=__name__,
        events=(list[event], Field(min_length=1)),
    )
    return TypeAdapter(event), envelope


def validate_event(event: Mapping[str, Any] | str | bytes) -> EventFields:
    """Check one event (a dict, or its JSON text) against the model of its type. Raises
    pydantic's ``ValidationError`` naming the field and the problem."""
    adapter, _ = _strict_models(tuple(EVENT_TYPES.items()))
    if isinstance(event, str | bytes):
        result = adapter.validate_json(event)
    else:
        result = adapter.validate_python(event)
    assert isinstance(result, EventFields)
    return result


def validate_envelope(payload: str | bytes) -> EnvelopeModel:
    """Check an ``up/{stream}`` message completely: the envelope, every event against its
    type's model, and the seqs. Raises ``ValidationError`` (locations like
    ``events.0.alert.raised.severity``)."""
    _, envelope = _strict_models(tuple(EVENT_TYPES.items()))
    result = envelope.model_validate_json(payload)
    assert isinstance(result, EnvelopeModel)
    return result


# --- the other messages ---------------------------------------------------------------------


class StateMessage(BaseModel):
    """`state`, QoS 1, retained: the birth on connect, the same topic as last will and on a
    clean stop. A death whose boot is older than the current birth is stale: ignore it."""

    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [{"online": True, "boot": 12}]}
    )
    online: bool = Field(description="true: birth; false: death (will or clean stop)")
    boot: Annotated[Boot, Field(ge=1)]


class AckMessage(BaseModel):
    """`down/ack` (HQ → store), QoS 1: HQ has durably stored every event of the stream and
    epoch up to and including `seq`; only then does the gateway delete them."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [{"stream": "stock", "epoch": "9f2c4e1a7b3d5c60", "seq": 43}]
        },
    )
    stream: StreamName
    epoch: Epoch
    seq: Seq = Field(
        description="The contiguous custody watermark: highest seq stored with every seq below it"
    )


class HealthStream(BaseModel):
    """One outbox stream in `up/health`."""

    model_config = ConfigDict(extra="forbid", strict=True)
    stream: StreamName
    depth: Count = Field(description="Events buffered (not yet in HQ's custody)")
    bytes: Count = Field(description="Bytes those events take in the outbox")
    oldest_ts: Instant | None = Field(description="`ts` of the oldest buffered event")
    acked_seq: Count = Field(description="HQ's custody watermark")


class BufferReport(BaseModel):
    """The outbox byte budget and what it turned away since pressure began."""

    model_config = ConfigDict(extra="forbid", strict=True)
    used_bytes: Count = Field(description="Bytes the buffered events take")
    budget_bytes: Count = Field(description="The outbox byte budget")
    paused: list[Literal["detail", "aggregate"]] = Field(
        description="Lossy shedding classes currently turned away"
    )
    shed: dict[str, Count] = Field(
        description="`stream/type` -> events dropped", examples=[{"dwell/dwell.visit": 120}]
    )
    refused: dict[str, Count] = Field(description="`stream/type` -> events refused")


class LastHqAck(BaseModel):
    """The last custody ack received from HQ."""

    model_config = ConfigDict(extra="forbid", strict=True)
    stream: StreamName
    seq: Seq
    at: str = Field(
        description="When it arrived (ISO 8601 UTC, microsecond precision)",
        examples=["2026-11-23T09:00:01.250311+00:00"],
        json_schema_extra={"format": "date-time"},
    )


class DriverReport(BaseModel):
    """One device driver instance."""

    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(description="Configured device name", examples=["shelf-a"])
    family: Literal["scale", "beacon", "esl"] = Field(description="Device family")
    health: Literal["starting", "running", "degraded", "failed", "stopped"] = Field(
        description="Supervision state"
    )
    last_error: str | None = Field(description="The last failure, if any")
    restarts: Count = Field(description="Restarts by the supervisor since the gateway started")


class LinkReport(BaseModel):
    """The MQTT connection to HQ's broker."""

    model_config = ConfigDict(extra="forbid", strict=True)
    connected: bool
    transport: Literal["tls", "PLAINTEXT"] = Field(description="PLAINTEXT only if configured")
    connected_since: Instant | None
    last_error: str | None = Field(description="The last connection failure, if any")
    last_error_at: Instant | None
    reconnects: Count
    publishes: Count = Field(description="Messages published since the gateway started")
    last_puback_at: Instant | None = Field(description="The broker's last acknowledgement")
    receive_maximum: int = Field(ge=1, description="QoS 1 publishes kept in flight at most")


class HealthSnapshot(BaseModel):
    """`up/health`, QoS 0, not retained, never buffered: the latest state every
    `health_interval_s` while connected. A stale one is worth nothing: keep the latest."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "v": 1,
                    "type": "health",
                    "store": "store-0042",
                    "boot": 12,
                    "sent_at": "2026-11-23T09:00:01.250+00:00",
                    "clock_synchronized": True,
                    "streams": [
                        {
                            "stream": "stock",
                            "depth": 3,
                            "bytes": 612,
                            "oldest_ts": "2026-11-23T09:00:00.120+00:00",
                            "acked_seq": 40,
                        }
                    ],
                    "buffer": {
                        "used_bytes": 612,
                        "budget_bytes": 268435456,
                        "paused": [],
                        "shed": {},
                        "refused": {},
                    },
                    "last_hq_ack": {
                        "stream": "stock",
                        "seq": 40,
                        "at": "2026-11-23T08:59:59.871207+00:00",
                    },
                    "disk_free_bytes": 1073741824,
                    "drivers": [
                        {
                            "name": "shelf-a",
                            "family": "scale",
                            "health": "running",
                            "last_error": None,
                            "restarts": 0,
                        }
                    ],
                    "link": {
                        "connected": True,
                        "transport": "tls",
                        "connected_since": "2026-11-23T08:00:00.004+00:00",
                        "last_error": None,
                        "last_error_at": None,
                        "reconnects": 0,
                        "publishes": 5120,
                        "last_puback_at": "2026-11-23T09:00:00.980+00:00",
                        "receive_maximum": 20,
                    },
                }
            ]
        },
    )
    v: Literal[1] = Field(description="Message version")
    type: Literal["health"]
    store: StoreId
    boot: Annotated[Boot, Field(ge=1)] | None
    sent_at: Instant
    clock_synchronized: bool = Field(description="Whether event `ts` can be trusted")
    streams: list[HealthStream] = Field(description="Every outbox stream")
    buffer: BufferReport | None
    last_hq_ack: LastHqAck | None = Field(description="null until HQ acked once since the start")
    disk_free_bytes: Count | None = Field(description="Free space where the database lives")
    drivers: list[DriverReport]
    link: LinkReport | None


# --- the generated section of docs/protocol.md ----------------------------------------------


_ENVELOPE_EXAMPLE: dict[str, Any] = {
    "v": 1,
    "type": "events",
    "store": "store-0042",
    "stream": "alerts",
    "epoch": "9f2c4e1a7b3d5c60",
    "boot": 12,
    "seq_from": 43,
    "seq_to": 43,
    "sent_at": "2026-11-23T09:00:01.250+00:00",
    "events": [
        {**_EXAMPLE_HEADER, "type": "alert.raised", **_examples(AlertRaised)[0]},
    ],
}


class SignedMessage(BaseModel):
    """The wrapper of a signed downlink message (docs: "Signed downlink messages")."""

    model_config = ConfigDict(extra="forbid", strict=True)
    v: Literal[1]
    kid: str = Field(description="Which HQ key signed it", examples=["hq-2026-11"])
    payload: str = Field(description="base64 of the exact payload bytes")
    sig: str = Field(description="base64 Ed25519 signature over the payload bytes")


class SyncRequest(BaseModel):
    """`up/sync`: the store's applied price version and the later versions it holds."""

    model_config = ConfigDict(extra="forbid", strict=True)
    v: Literal[1]
    type: Literal["sync"]
    store: str
    have_version: int = Field(ge=0, description="Every version up to this one is applied")
    held_versions: list[int] = Field(description="Received, waiting for the missing ones")
    sent_at: Instant


class CommandReply(BaseModel):
    """The reply to a command, on the command's response topic with its correlation data."""

    model_config = ConfigDict(extra="forbid", strict=True)
    v: Literal[1]
    type: Literal["reply"]
    id: str
    name: str
    ok: bool
    result: dict[str, Any] | None = Field(None, json_schema_extra=_no_default)
    error: str | None = Field(None, json_schema_extra=_no_default)


_DOWNLINK_EXAMPLES: dict[str, dict[str, Any]] = {
    "signed": {
        "v": 1,
        "kid": "hq-2026-11",
        "payload": "eyJ2IjoxLCJ0eXBlIjoicHJpY2VzIiwgIi4uLiI6ICIuLi4ifQ==",
        "sig": "q0vN2m0XnFhR9Jm3o6d2Zr1yM4QJ9o1V2m5bW1b0G3c1n3v6Jb2m0bE6mXv1c9n4"
        "p2d8c4f5g6h7j8k9l0m1n2==",
    },
    "prices": {
        "v": 1,
        "type": "prices",
        "scope": {"stores": ["store-0042"], "groups": []},
        "version": 42,
        "kind": "delta",
        "part": 1,
        "parts": 1,
        "issued_at": "2026-11-23T09:00:00.000+00:00",
        "valid_until": "2026-11-24T09:00:00.000+00:00",
        "items": [
            {
                "sku": "4006381333931",
                "price": "1.99",
                "currency": "EUR",
                "unit_price": "7.96",
                "unit": "kg",
                "name": "Butter 250 g",
                "reference_price": "2.49",
            }
        ],
        "delete": ["4006381333948"],
        "promotions": [
            {
                "id": "flash-7",
                "sku": "4006381333931",
                "price": "0.99",
                "currency": "EUR",
                "reference_price": "1.99",
                "effective_from": "2026-11-23T17:00:00+01:00",
                "effective_to": "2026-11-23T19:00:00+01:00",
            }
        ],
        "cancel_promotions": ["flash-3"],
    },
    "command": {
        "v": 1,
        "type": "command",
        "id": "c-7f3a9e",
        "name": "ping",
        "args": {},
        "scope": {"stores": ["store-0042"]},
        "issued_at": "2026-11-23T09:00:00.000+00:00",
        "valid_until": "2026-11-23T09:05:00.000+00:00",
    },
    "reply": {
        "v": 1,
        "type": "reply",
        "id": "c-7f3a9e",
        "name": "ping",
        "ok": True,
        "result": {"pong": True, "store": "store-0042", "price_version": 42},
    },
    "sync": {
        "v": 1,
        "type": "sync",
        "store": "store-0042",
        "have_version": 41,
        "held_versions": [43],
        "sent_at": "2026-11-23T09:00:01.250+00:00",
    },
}


def _price_batch_model() -> type[BaseModel]:
    """The price batch payload with its items and promotions spelled out (the store
    validates those one by one, to report every bad item)."""
    from gateway.prices.batch import PriceBatchHeader, PriceItem, Promotion

    return create_model(
        "PriceBatch",
        __base__=PriceBatchHeader,
        __doc__="`down/prices` payload: a full or delta price batch (one part of it).",
        items=(list[PriceItem], Field(default_factory=list)),
        promotions=(list[Promotion], Field(default_factory=list)),
    )


def documented_examples() -> list[tuple[str, type[BaseModel], dict[str, Any]]]:
    """(name, model, example) for every message and event type in the docs."""
    found: list[tuple[str, type[BaseModel], dict[str, Any]]] = [
        ("`state` — birth and death", StateMessage, _examples(StateMessage)[0]),
        ("`up/{stream}` — event envelope", EnvelopeModel, _ENVELOPE_EXAMPLE),
    ]
    for name in EVENT_TYPES:
        model = event_model(name)
        found.append((f"Event `{name}`", model, _examples(model)[0]))
    found.append(("`down/ack` — custody watermark", AckMessage, _examples(AckMessage)[0]))
    found.append(("`up/health` — snapshot", HealthSnapshot, _examples(HealthSnapshot)[0]))
    from gateway.sync.commands import CommandRequest

    found += [
        ("Signed downlink wrapper", SignedMessage, _DOWNLINK_EXAMPLES["signed"]),
        ("`down/prices` — price batch payload", _price_batch_model(), _DOWNLINK_EXAMPLES["prices"]),
        ("`up/sync` — resync request", SyncRequest, _DOWNLINK_EXAMPLES["sync"]),
        ("`down/cmd/{name}` — command payload", CommandRequest, _DOWNLINK_EXAMPLES["command"]),
        ("Command reply", CommandReply, _DOWNLINK_EXAMPLES["reply"]),
    ]
    return found


def _pretty(value: Any, indent: int = 0, column: int = 0) -> str:
    """JSON indented by two, keeping on one line any array or object that fits in 100
    columns (``column``: where the value starts, ``indent``: its line's indentation)."""
    flat = json.dumps(value, ensure_ascii=False)
    if not isinstance(value, dict | list) or not value or column + len(flat) <= 100:
        return flat
    inner = " " * (indent + 2)
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            prefix = f"{inner}{json.dumps(key, ensure_ascii=False)}: "
            lines.append(prefix + _pretty(item, indent + 2, len(prefix)))
        opening, closing = "{", "}"
    else:
        lines = [inner + _pretty(item, indent + 2, len(inner)) for item in value]
        opening, closing = "[", "]"
    return opening + "\n" + ",\n".join(lines) + "\n" + " " * indent + closing


def _tidy(schema: Any) -> Any:
    """Docstrings' line breaks out of the descriptions (the models keep them)."""
    if isinstance(schema, dict):
        return {
            key: " ".join(item.split())
            if key == "description" and isinstance(item, str)
            else _tidy(item)
            for key, item in schema.items()
        }
    if isinstance(schema, list):
        return [_tidy(item) for item in schema]
    return schema


def _json_block(value: Any) -> str:
    return "```json\n" + _pretty(value) + "\n```"


def _section(title: str, model: type[BaseModel], example: dict[str, Any]) -> str:
    schema = _tidy(model.model_json_schema())
    schema.pop("examples", None)  # shown below, in the order fields are written
    summary = " ".join((model.__doc__ or "").split("\n\n")[0].split())
    return "\n\n".join(
        (f"### {title}", summary, _json_block(schema), "Example:", _json_block(example))
    )


def protocol_schemas_markdown() -> str:
    """The generated section of docs/protocol.md (without its marker lines)."""
    parts = [
        "## Message schemas",
        (
            "Generated from the pydantic models in `gateway/events.py` by "
            "`python -m gateway.events`: edit the models, never this section. Each event "
            "type's schema covers the whole event, its header fields first."
        ),
    ]
    parts.extend(_section(*entry) for entry in documented_examples())
    return "\n\n".join(parts) + "\n"


def replace_generated(document: str, generated: str) -> str:
    """``document`` with the text between the markers replaced by ``generated``."""
    start = document.find(BEGIN_MARKER)
    end = document.find(END_MARKER)
    if start < 0 or end < start:
        raise ValueError(f"markers not found: {BEGIN_MARKER!r} ... {END_MARKER!r}")
    head = document[: start + len(BEGIN_MARKER)]
    return head + "\n\n" + generated + "\n" + document[end:]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.events",
        description="Rewrite the generated schema section of docs/protocol.md.",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if the section is stale")
    parser.add_argument("--doc", type=Path, default=_DOC_PATH, help="default: %(default)s")
    args = parser.parse_args(argv)
    document = args.doc.read_text(encoding="utf-8")
    updated = replace_generated(document, protocol_schemas_markdown())
    if updated == document:
        return 0
    if args.check:
        print(
            f"{args.doc}: generated schemas are stale; run python -m gateway.events",
            file=sys.stderr,
        )
        return 1
    args.doc.write_text(updated, encoding="utf-8")
    print(f"{args.doc}: generated schemas rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
