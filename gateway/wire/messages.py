"""The other messages between the store and HQ: the retained ``state`` birth and death, HQ's
``down/ack``, the ``up/health`` snapshot (built by
:meth:`gateway.diagnostics.Diagnostics.health_snapshot`), the signed downlink wrapper,
``up/sync`` and command replies."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.wire.fields import Boot, Count, Epoch, Instant, Seq, StoreId, StreamName, no_default

__all__ = [
    "AckMessage",
    "BufferReport",
    "CommandReply",
    "DriverReport",
    "HealthSnapshot",
    "HealthStream",
    "LastHqAck",
    "LinkReport",
    "RefusedBatch",
    "SignedMessage",
    "StateMessage",
    "SyncRequest",
]


class StateMessage(BaseModel):
    """`state`, QoS 1, retained: the birth on connect, the same topic as last will and on a
    clean stop. A death whose boot is older than the current birth is stale: ignore it."""

    model_config = ConfigDict(
        defer_build=True,
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"online": True, "boot": 12}]},
    )
    online: bool = Field(description="true: birth; false: death (will or clean stop)")
    boot: Annotated[Boot, Field(ge=1)]


class AckMessage(BaseModel):
    """`down/ack` (HQ → store), QoS 1: HQ has durably stored every event of the stream and
    epoch up to and including `seq`; only then does the gateway delete them."""

    model_config = ConfigDict(
        defer_build=True,
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

    model_config = ConfigDict(defer_build=True, extra="forbid", strict=True)
    stream: StreamName
    depth: Count = Field(description="Events buffered (not yet in HQ's custody)")
    bytes: Count = Field(description="Bytes those events take in the outbox")
    oldest_ts: Instant | None = Field(description="`ts` of the oldest buffered event")
    acked_seq: Count = Field(description="HQ's custody watermark")


class BufferReport(BaseModel):
    """The outbox byte budget and what it turned away since pressure began."""

    model_config = ConfigDict(defer_build=True, extra="forbid", strict=True)
    used_bytes: Count = Field(description="Bytes the buffered events take")
    budget_bytes: Count = Field(description="The outbox byte budget")
    paused: list[Literal["detail", "aggregate"]] = Field(
        description="Lossy shedding classes currently turned away"
    )
    shed: dict[str, Count] = Field(
        description="`stream/type` -> events dropped", examples=[{"dwell/zone.exit": 120}]
    )
    refused: dict[str, Count] = Field(description="`stream/type` -> events refused")


class LastHqAck(BaseModel):
    """The last custody ack received from HQ."""

    model_config = ConfigDict(defer_build=True, extra="forbid", strict=True)
    stream: StreamName
    seq: Seq
    at: str = Field(
        description="When it arrived (ISO 8601 UTC, microsecond precision)",
        examples=["2026-11-23T09:00:01.250311+00:00"],
        json_schema_extra={"format": "date-time"},
    )


class DriverReport(BaseModel):
    """One device driver instance."""

    model_config = ConfigDict(defer_build=True, extra="forbid", strict=True)
    name: str = Field(description="Configured device name", examples=["shelf-a"])
    family: Literal["scale", "beacon", "esl"] = Field(description="Device family")
    health: Literal["starting", "running", "degraded", "failed", "stopped"] = Field(
        description="Supervision state"
    )
    last_error: str | None = Field(description="The last failure, if any")
    restarts: Count = Field(description="Restarts by the supervisor since the gateway started")


class LinkReport(BaseModel):
    """The MQTT connection to HQ's broker."""

    model_config = ConfigDict(defer_build=True, extra="forbid", strict=True)
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
        defer_build=True,
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


class SignedMessage(BaseModel):
    """The wrapper of a signed downlink message (docs: "Signed downlink messages")."""

    model_config = ConfigDict(defer_build=True, extra="forbid", strict=True)
    v: Literal[1]
    kid: str = Field(description="Which HQ key signed it", examples=["hq-2026-11"])
    payload: str = Field(description="base64 of the exact payload bytes")
    sig: str = Field(description="base64 Ed25519 signature over the payload bytes")


class RefusedBatch(BaseModel):
    """`last_refused` in `up/sync`: a refused batch, so HQ can tell "refused" from "not
    received" when no new alert comes (one is active already)."""

    model_config = ConfigDict(defer_build=True, extra="forbid", strict=True)
    version: int | None = Field(
        ge=1, description="The version it claimed (unverified); null when unreadable"
    )
    reason: str = Field(max_length=300, examples=["downlink.signature: bad signature"])
    at: Instant


class SyncRequest(BaseModel):
    """`up/sync`: the store's applied price version and the later versions it holds."""

    model_config = ConfigDict(defer_build=True, extra="forbid", strict=True)
    v: Literal[1]
    type: Literal["sync"]
    store: str
    have_version: int = Field(ge=0, description="Every version up to this one is applied")
    held_versions: list[int] = Field(description="Received, waiting for the missing ones")
    sent_at: Instant
    last_refused: RefusedBatch | None = Field(
        None,
        description="The last price batch the store refused since it started (absent: none)",
        json_schema_extra=no_default,
    )


class CommandReply(BaseModel):
    """The reply to a command, on the command's response topic with its correlation data."""

    model_config = ConfigDict(defer_build=True, extra="forbid", strict=True)
    v: Literal[1]
    type: Literal["reply"]
    id: str
    name: str
    ok: bool
    result: dict[str, Any] | None = Field(None, json_schema_extra=no_default)
    error: str | None = Field(None, json_schema_extra=no_default)
