"""The wire contract with HQ: one pydantic model per message and event type, and its encoding.

Every message the gateway exchanges with HQ has a model here: the retained ``state`` birth and
death, the ``up/{stream}`` envelope and the header every event carries, one model per event
type, HQ's ``down/ack`` and the ``up/health`` snapshot. Producers build the event models and
hand them to the outbox, which takes nothing else (:data:`~gateway.wire.registry.WIRE_EVENTS`)
and encodes each event once (:mod:`gateway.wire.encoding`); docs/protocol.md carries the JSON
Schemas generated from the same models (:mod:`gateway.wire.schema_doc`).

- :mod:`~gateway.wire.fields` — field types every model shares (instants, seqs, ids);
- :mod:`~gateway.wire.envelope` — the envelope, the event header, :class:`EventBody`;
- :mod:`~gateway.wire.alerts`, :mod:`~gateway.wire.expiry`, :mod:`~gateway.wire.prices`,
  :mod:`~gateway.wire.labels`, :mod:`~gateway.wire.stock` — the event types, by stream and
  feature;
- :mod:`~gateway.wire.registry` — :data:`EVENT_TYPES`, the catalogue the outbox checks, the
  exact validators;
- :mod:`~gateway.wire.messages` — the other messages (state, ack, health, downlink);
- :mod:`~gateway.wire.encoding` — bodies, stored events and envelopes as bytes;
- :mod:`~gateway.wire.schema_doc` — the docs generator (a tool, not imported here).
"""

from __future__ import annotations

from gateway.wire.alerts import AlertCleared, AlertRaised
from gateway.wire.dwell import ZoneAggregate, ZoneEntered, ZoneExited
from gateway.wire.encoding import (
    OutboxEvent,
    WireBatch,
    encode_bodies,
    encode_message,
    pack_envelope,
    pack_wire_batch,
)
from gateway.wire.envelope import (
    EnvelopeHeaders,
    EnvelopeModel,
    EventBody,
    EventFields,
    EventHeader,
    TrustedEvents,
)
from gateway.wire.expiry import EXPIRED_TYPE, OutboxExpired
from gateway.wire.labels import (
    LabelBound,
    LabelConfirmed,
    LabelExpired,
    LabelFailed,
    LabelJobReceipt,
    LabelQueued,
    LabelSuperseded,
    LabelUnbound,
)
from gateway.wire.messages import (
    AckMessage,
    BufferReport,
    CommandReply,
    DriverReport,
    HealthSnapshot,
    HealthStream,
    LastHqAck,
    LinkReport,
    SignedMessage,
    StateMessage,
    SyncRequest,
)
from gateway.wire.prices import PriceApplied, PriceProblem, PriceRejected, PriceStored
from gateway.wire.registry import (
    EVENT_TYPES,
    WIRE_EVENTS,
    EventCatalogue,
    event_model,
    validate_envelope,
    validate_event,
)
from gateway.wire.stock import SlotActivity, StockActivity, StockAmbiguous, StockChanged

__all__ = [
    "EVENT_TYPES",
    "EXPIRED_TYPE",
    "WIRE_EVENTS",
    "AckMessage",
    "AlertCleared",
    "AlertRaised",
    "BufferReport",
    "CommandReply",
    "DriverReport",
    "EnvelopeHeaders",
    "EnvelopeModel",
    "EventBody",
    "EventCatalogue",
    "EventFields",
    "EventHeader",
    "HealthSnapshot",
    "HealthStream",
    "LabelBound",
    "LabelConfirmed",
    "LabelExpired",
    "LabelFailed",
    "LabelJobReceipt",
    "LabelQueued",
    "LabelSuperseded",
    "LabelUnbound",
    "LastHqAck",
    "LinkReport",
    "OutboxEvent",
    "OutboxExpired",
    "PriceApplied",
    "PriceProblem",
    "PriceRejected",
    "PriceStored",
    "SignedMessage",
    "SlotActivity",
    "StateMessage",
    "StockActivity",
    "StockAmbiguous",
    "StockChanged",
    "SyncRequest",
    "TrustedEvents",
    "WireBatch",
    "ZoneAggregate",
    "ZoneEntered",
    "ZoneExited",
    "encode_bodies",
    "encode_message",
    "event_model",
    "pack_envelope",
    "pack_wire_batch",
    "validate_envelope",
    "validate_event",
]
