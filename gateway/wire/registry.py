"""Every event type of the wire contract, by name, and the exact validators built from them.

:data:`EVENT_TYPES` is the one list: the outbox takes events of these types only
(:data:`WIRE_EVENTS`), docs/protocol.md documents each (:mod:`gateway.wire.schema_doc`), and
:func:`validate_event` / :func:`validate_envelope` check everything the gateway promises: each
event against its type's model (unknown types refused), strict JSON types (``41.0`` is not a
seq) and consecutive seqs matching ``seq_from``/``seq_to``.

A new event type is a subclass of :class:`~gateway.wire.envelope.EventBody` with its own fields
and an example, in the module of its stream or feature (``gateway/wire/stock.py``…), added to
:data:`EVENT_TYPES`; then regenerate the docs (``python -m gateway.wire.schema_doc``).
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any, Literal, Self, cast

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model, model_validator

from gateway.wire.alerts import AlertCleared, AlertRaised
from gateway.wire.dwell import ZoneAggregate, ZoneEntered, ZoneExited
from gateway.wire.envelope import EnvelopeModel, EventBody, EventFields
from gateway.wire.expiry import EXPIRED_TYPE, OutboxExpired
from gateway.wire.fields import Boot, Epoch, Instant
from gateway.wire.labels import (
    LabelBound,
    LabelConfirmed,
    LabelExpired,
    LabelFailed,
    LabelQueued,
    LabelSuperseded,
    LabelUnbound,
)
from gateway.wire.prices import PriceApplied, PriceRejected, PriceStored
from gateway.wire.stock import StockActivity, StockAmbiguous, StockChanged

__all__ = [
    "EVENT_TYPES",
    "EXAMPLE_HEADER",
    "WIRE_EVENTS",
    "EventCatalogue",
    "event_model",
    "model_examples",
    "validate_envelope",
    "validate_event",
]

#: Event type name -> model of its own fields. New features add their types here.
EVENT_TYPES: Mapping[str, type[EventBody]] = MappingProxyType(
    {
        "alert.raised": AlertRaised,
        "alert.cleared": AlertCleared,
        EXPIRED_TYPE: OutboxExpired,
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
        "zone.enter": ZoneEntered,
        "zone.exit": ZoneExited,
        "zone.aggregate": ZoneAggregate,
    }
)


class EventCatalogue:
    """The event models an outbox takes, each with the type name it is sent under: an event
    is an instance of exactly one of them (a dict, a subclass or another model is refused).
    Fixed once made; the contract's own is :data:`WIRE_EVENTS`. Made of one or more
    ``name -> model`` mappings (a test adds its own models to the contract's)."""

    __slots__ = ("_names",)

    def __init__(self, *types: Mapping[str, type[EventBody]]) -> None:
        names: dict[type[EventBody], tuple[str, str]] = {}
        for mapping in types:
            for name, model in mapping.items():
                if names.get(model, (name,))[0] != name:
                    raise ValueError(f"{model.__name__} is both {names[model][0]} and {name}")
                names[model] = (name, json.dumps(name))
        self._names = names

    def __contains__(self, model: object) -> bool:
        return model in self._names

    def type_of(self, event: EventBody) -> tuple[str, str]:
        """``event``'s type name, and the name as JSON text; TypeError for anything that is
        not an instance of one of the catalogue's models: an event the contract does not
        describe never reaches the outbox."""
        return self.type_named(type(event))

    def type_named(self, model: type[Any]) -> tuple[str, str]:
        """:meth:`type_of` an instance of ``model``."""
        found = self._names.get(model)
        if found is None:
            raise TypeError(
                f"{model.__module__}.{model.__qualname__} is not an event type of "
                "this outbox (the wire's: gateway.wire.registry.EVENT_TYPES)"
            )
        return found


#: The wire contract's event types: what the gateway's outbox takes.
WIRE_EVENTS = EventCatalogue(EVENT_TYPES)

#: The header of the documented example events (one envelope's worth).
EXAMPLE_HEADER: Mapping[str, Any] = MappingProxyType(
    {"seq": 43, "id": "5b0e1c2d3f4a5b6c", "ts": "2026-11-23T09:00:00.120+00:00"}
)


def model_examples(model: type[BaseModel]) -> list[dict[str, Any]]:
    """The examples a model carries in its ``json_schema_extra`` (copies)."""
    extra = model.model_config.get("json_schema_extra")
    found = extra.get("examples") if isinstance(extra, dict) else None
    return [dict(ex) for ex in found if isinstance(ex, dict)] if isinstance(found, list) else []


def event_model(event_type: str) -> type[EventFields]:
    """The model of a whole event of ``event_type`` (header and its own fields); KeyError for
    a type not in :data:`EVENT_TYPES`."""
    return _event_model(event_type, EVENT_TYPES[event_type])


@functools.cache
def _event_model(event_type: str, body: type[EventBody]) -> type[EventFields]:
    examples = [{**EXAMPLE_HEADER, "type": event_type, **ex} for ex in model_examples(body)]
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
