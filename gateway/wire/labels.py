"""Stream ``receipts``, shelf labels: bindings (:mod:`gateway.labels.bindings`) and the life of
each label job, from queued to confirmed by the label itself (:mod:`gateway.labels`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from gateway.wire.envelope import EventBody
from gateway.wire.fields import Instant, no_default

__all__ = [
    "LabelBound",
    "LabelConfirmed",
    "LabelExpired",
    "LabelFailed",
    "LabelJobReceipt",
    "LabelQueued",
    "LabelSuperseded",
    "LabelUnbound",
]


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
        json_schema_extra=no_default,
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
