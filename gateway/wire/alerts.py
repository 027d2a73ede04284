"""Stream ``alerts``: an alert raised (or escalated) and cleared (:mod:`gateway.alerts`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from gateway.wire.envelope import EventBody
from gateway.wire.fields import Instant, no_default

__all__ = [
    "AlertCleared",
    "AlertRaised",
    "SeverityName",
]


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
        examples=[{"shed": {"dwell/zone.exit": 120}, "refused": {}}],
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
        json_schema_extra=no_default,
    )
