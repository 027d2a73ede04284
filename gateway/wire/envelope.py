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

import os
from collections.abc import Mapping, Sequence
from itertools import repeat
from operator import eq
from typing import Annotated, Any, ClassVar, Self, TypeVar, overload

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
    "CHECK_TRUSTED_ENV",
    "ENVELOPE_VERSION",
    "EnvelopeHeaders",
    "EnvelopeModel",
    "EventBody",
    "EventFields",
    "EventHeader",
    "TrustedEvents",
    "check_trusted_events",
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

    model_config = ConfigDict(defer_build=True, extra="forbid")
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

    model_config = ConfigDict(defer_build=True, extra="forbid", strict=True)
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


#: Set to 1 in the environment (the test suite does, for itself and the daemons it starts),
#: :meth:`EventBody.trusted` validates as :meth:`EventBody.validated` does.
CHECK_TRUSTED_ENV = "WIRE_CHECK_TRUSTED"
_CHECK_TRUSTED = os.environ.get(CHECK_TRUSTED_ENV) == "1"


def check_trusted_events(on: bool) -> None:
    """Make :meth:`EventBody.trusted` validate in full (the test suite), or not."""
    global _CHECK_TRUSTED  # noqa: PLW0603 - one switch for the process, read per event
    _CHECK_TRUSTED = on


_new_instance = object.__new__
# BaseModel's own slots, set as pydantic-core sets them on a validated instance.
_set_fields = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


class EventBody(BaseModel):
    """Base of an event type's own fields (the header is :class:`EventFields`): what a
    producer builds and the outbox takes. Strict, so a value of the wrong JSON type is refused
    where the event is made, not found later in HQ's store."""

    # defer_build (here and on the other wire models): a model's validator is built when first
    # used, not when the daemon imports it — producers use :meth:`trusted`, so most never are.
    model_config = ConfigDict(defer_build=True, extra="forbid", strict=True)

    # Per model: its field names, and the one fields-set its trusted events share (every
    # field is set, so pydantic's own API never changes it: assignment adds a name already
    # there, copies copy it).
    __trusted_fields__: ClassVar[tuple[tuple[str, ...], set[str]] | None] = None

    @classmethod
    def validated(cls, fields: Mapping[str, Any]) -> Self:
        """The event of ``fields``, validated exactly as ``cls(**fields)`` validates (same
        checks, same ``ValidationError``), without the keyword-argument and ``__init__``
        overhead: about twice as fast."""
        event: Self = cls.__pydantic_validator__.validate_python(fields)
        return event

    @classmethod
    def _trusted_fields(cls) -> tuple[tuple[str, ...], set[str]]:
        found = cls.__dict__.get("__trusted_fields__")
        if found is None:
            found = (tuple(cls.model_fields), set(cls.model_fields))
            cls.__trusted_fields__ = found
        return found

    @classmethod
    def trusted(cls, fields: dict[str, Any]) -> Self:
        """The event of ``fields`` — every field of the model in its order, no other — built
        without checking the values: for an internal producer whose values are typed and
        checked before, and whose output a test checks against the schema over the producer's
        inputs (see docs/architecture.md, "a new event type"); about 4x cheaper than
        :meth:`validated`. The names are checked (else :meth:`validated`: its
        ``ValidationError``, or the fields put in order); types, bounds and patterns are not,
        except under ``WIRE_CHECK_TRUSTED=1`` (the test suite), where this is
        :meth:`validated`. ``fields`` becomes the event's own: a dict made for it, not changed
        afterwards."""
        names, fields_set = cls._trusted_fields()
        if _CHECK_TRUSTED or tuple(fields) != names:
            return cls.validated(fields)
        event: Self = _new_instance(cls)
        _set_fields(event, fields)
        _set_fields_set(event, fields_set)
        _set_extra(event, None)
        _set_private(event, None)
        return event

    @classmethod
    def trusted_many(cls, fields: list[dict[str, Any]]) -> TrustedEvents[Self]:
        """:meth:`trusted` for a batch: the events kept as their fields (the outbox encodes
        them from there: no model instance per event), each made a model when read. Under
        ``WIRE_CHECK_TRUSTED=1`` each is validated first (as :meth:`validated`)."""
        names, _ = cls._trusted_fields()
        if _CHECK_TRUSTED or not all(map(eq, map(tuple, fields), repeat(names))):
            fields = [cls.validated(one).__dict__ for one in fields]
        return TrustedEvents(cls, fields)


Event = TypeVar("Event", bound=EventBody)


class TrustedEvents(Sequence[Event]):
    """Events of one model built by :meth:`EventBody.trusted_many`: a sequence of models to
    whoever reads it, stored as the events' fields (their names checked, in order)."""

    __slots__ = ("fields", "model")

    def __init__(self, model: type[Event], fields: list[dict[str, Any]]) -> None:
        self.model = model
        self.fields = fields

    def __len__(self) -> int:
        return len(self.fields)

    @overload
    def __getitem__(self, index: int) -> Event: ...

    @overload
    def __getitem__(self, index: slice) -> TrustedEvents[Event]: ...

    def __getitem__(self, index: int | slice) -> Event | TrustedEvents[Event]:
        if isinstance(index, slice):
            return TrustedEvents(self.model, self.fields[index])
        fields = self.fields[index]
        event = _new_instance(self.model)
        _set_fields(event, fields)
        _set_fields_set(event, self.model._trusted_fields()[1])
        _set_extra(event, None)
        _set_private(event, None)
        return event

    def __repr__(self) -> str:
        return f"TrustedEvents({self.model.__qualname__}, {len(self.fields)} events)"
