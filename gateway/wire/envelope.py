"""The envelope and the event header: what every ``up/{stream}`` message and event carries.

Two strengths of validation, on purpose:

- :class:`EnvelopeModel` with :class:`EventHeader` is what the reference HQ consumer accepts:
  an exact envelope, and events checked only for their header (the rest is kept as it came, so
  an event type HQ does not know yet is stored, never refused). It is fast: the events are a
  TypedDict validated in C.
- :class:`EventFields` is the header exactly as the gateway writes it; with an event type's own
  fields (a subclass of :class:`EventBody`, see :mod:`gateway.wire.registry`) it makes the
  exact model of a whole event.

:class:`EventBody` is also what producers hand to the outbox: one model per event type.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from gateway.wire.fields import (
    Boot,
    Epoch,
    EventId,
    EventTs,
    EventTypeName,
    Instant,
    Seq,
    StoreId,
    StreamName,
    no_default,
)

__all__ = [
    "ENVELOPE_VERSION",
    "EnvelopeHeaders",
    "EnvelopeModel",
    "EventBody",
    "EventFields",
    "EventHeader",
]

ENVELOPE_VERSION = 1


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
    no_default(schema)


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
    """Base of an event type's own fields (the header is :class:`EventFields`): what a
    producer builds and the outbox takes. Strict, so a value of the wrong JSON type is refused
    where the event is made, not found later in HQ's store."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @classmethod
    def validated(cls, fields: Mapping[str, Any]) -> Self:
        """The event of ``fields``, validated exactly as ``cls(**fields)`` validates (same
        checks, same ``ValidationError``), without the keyword-argument and ``__init__``
        overhead: about twice as fast, the producers' hot path (bench/uplink.py)."""
        event: Self = cls.__pydantic_validator__.validate_python(fields)
        return event
