"""Stream ``dwell``: zone visits of enrolled store tags and per-zone aggregates for everyone
(:mod:`gateway.presence`).

Enrolled tags are the store's own (cart and basket tags, staff badges, opted-in app users
resolved by their identity key): their visits go up one by one (``zone.enter`` once a visit
has lasted long enough to count, ``zone.exit`` when it ended, with its dwell). Everyone else is
only ever counted: ``zone.aggregate`` per zone and interval. No address, pseudonym or per-
person record of a non-enrolled device is ever sent.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field

from gateway.wire.envelope import EventBody
from gateway.wire.fields import Instant

__all__ = ["ZoneAggregate", "ZoneEntered", "ZoneExited"]

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
ZoneName = Annotated[str, Field(pattern=_NAME, description="Zone name", examples=["produce"])]
TagName = Annotated[
    str,
    Field(
        pattern=_NAME,
        description="The enrolled tag's name (configured or enrolled by HQ)",
        examples=["cart-17"],
    ),
]
Seconds = Annotated[float, Field(ge=0, le=86_400 * 7)]


class ZoneEntered(EventBody):
    """Stream `dwell` (detail): an enrolled tag's visit to a zone counts — it has lasted
    `[presence] min_visit_s`. `entered_at` is when it arrived, earlier than the event."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"tag": "cart-17", "zone": "produce", "entered_at": "2026-11-23T09:00:00.120+00:00"}
            ]
        }
    )
    tag: TagName
    zone: ZoneName
    entered_at: Instant = Field(description="When the visit began")


class ZoneExited(EventBody):
    """Stream `dwell` (detail): an enrolled tag's visit to a zone ended (no return within
    `[presence] merge_gap_s`). `dwell_s` = `exited_at` - `entered_at`; `exited_at` is its last
    sighting inside, not when the store noticed it had gone."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "tag": "cart-17",
                    "zone": "produce",
                    "entered_at": "2026-11-23T09:00:00.120+00:00",
                    "exited_at": "2026-11-23T09:01:12.480+00:00",
                    "dwell_s": 72.36,
                    "sightings": 61,
                }
            ]
        }
    )
    tag: TagName
    zone: ZoneName
    entered_at: Instant = Field(description="When the visit began")
    exited_at: Instant = Field(description="The visit's last sighting in the zone")
    dwell_s: Seconds = Field(description="Seconds in the zone")
    sightings: Annotated[int, Field(ge=0)] = Field(description="Adverts heard inside")


class ZoneAggregate(EventBody):
    """Stream `dwell` (aggregate): one zone over one interval (`[presence] aggregate_interval_s`,
    aligned to the clock), counting every visitor — enrolled tags and pseudonymous devices
    alike, no identities. `visits` are the visits that *ended* in the interval; the dwell
    figures are theirs (null without visits). `peak_occupancy` is the most visitors in the zone
    at once during the interval. An interval with no visit and nobody present sends nothing."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "zone": "produce",
                    "start": "2026-11-23T09:00:00.000+00:00",
                    "end": "2026-11-23T09:05:00.000+00:00",
                    "visits": 14,
                    "dwell_median_s": 41.5,
                    "dwell_p90_s": 118.0,
                    "peak_occupancy": 5,
                }
            ]
        }
    )
    zone: ZoneName
    start: Instant = Field(description="Start of the interval")
    end: Instant = Field(description="End of the interval")
    visits: Annotated[int, Field(ge=0)] = Field(description="Visits that ended in the interval")
    dwell_median_s: Seconds | None = Field(description="Median dwell of those visits")
    dwell_p90_s: Seconds | None = Field(description="90th percentile dwell of those visits")
    peak_occupancy: Annotated[int, Field(ge=0)] = Field(description="Most visitors at once")
