"""Field types every wire model shares: instants, seqs, ids, names, counts.

Each is an ``Annotated`` type carrying its JSON Schema (pattern, bounds, description,
example), so a field declared with it documents itself in docs/protocol.md. Used by the
lenient envelope HQ accepts and by the exact event models alike.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

__all__ = [
    "Boot",
    "Count",
    "Epoch",
    "EventId",
    "EventTs",
    "EventTypeName",
    "Instant",
    "Seq",
    "StoreId",
    "StreamName",
    "no_default",
]


def no_default(schema: dict[str, Any]) -> None:
    """For optional fields that are absent rather than null: the Python default is no wire
    value, so it stays out of the schema (and the encoder leaves the field out while it holds
    its default, see :mod:`gateway.wire.encoding`)."""
    schema.pop("default", None)


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
