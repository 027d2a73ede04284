"""Any stream: the ``outbox.expired`` marker standing for events a stream's TTL expired
(:meth:`gateway.store.outbox.Outbox.expire`)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import ConfigDict, Field, model_validator

from gateway.wire.envelope import EventBody
from gateway.wire.fields import Instant

__all__ = [
    "EXPIRED_TYPE",
    "OutboxExpired",
]


#: Type of the marker event (docs/protocol.md).
EXPIRED_TYPE = "outbox.expired"


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
