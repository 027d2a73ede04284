"""Stream ``stock``: counted changes, ambiguous changes and activity per slot
(:mod:`gateway.shelves.service`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.wire.envelope import EventBody
from gateway.wire.fields import Instant

__all__ = [
    "SlotActivity",
    "StockActivity",
    "StockAmbiguous",
    "StockChanged",
]


SlotId = Annotated[
    str, Field(min_length=1, max_length=64, description="Shelf slot id", examples=["aisle3-2-l"])
]
SkuId = Annotated[str, Field(min_length=1, max_length=64, examples=["4006381333931"])]
ItemCount = Annotated[int, Field(ge=0)]


class StockChanged(EventBody):
    """Stream `stock`: a slot's item count changed. `pick` and `put` are counted changes of
    the weight between two stable levels; `recount` is the absolute count (from net weight
    and tray tare) replacing the running one, e.g. after an ambiguous change or at start-up.
    `before`/`after` are null while the count is unknown, never a guess."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "slot": "aisle3-2-l",
                    "sku": "4006381333931",
                    "kind": "pick",
                    "before": 7,
                    "after": 6,
                    "delta": -1,
                    "confidence": 0.98,
                    "grams": -251.3,
                }
            ]
        }
    )
    slot: SlotId
    sku: SkuId
    kind: Literal["pick", "put", "recount"] = Field(description="What happened")
    before: ItemCount | None = Field(description="Count before; null if it was unknown")
    after: ItemCount | None = Field(description="Count after; null if unknown")
    delta: int | None = Field(
        description="Items added (negative: removed); null for a recount from unknown",
        examples=[-1],
    )
    confidence: float = Field(
        ge=0,
        le=1,
        description="1 exactly on a whole number of items, 0.5 at the tolerance's edge",
    )
    grams: float = Field(description="The weight change (recount: the items' weight)")


class StockAmbiguous(EventBody):
    """Stream `stock`: the weight changed by an amount that is not a whole number of items
    within the slot's tolerance (or could be more than one count). Nothing is counted; the
    slot's count is unknown until a recount settles it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "slot": "aisle3-2-l",
                    "sku": "4006381333931",
                    "grams": -376.2,
                    "ratio": -1.505,
                    "candidates": [],
                    "count_before": 7,
                }
            ]
        }
    )
    slot: SlotId
    sku: SkuId
    grams: float = Field(description="The weight change between the two stable levels")
    ratio: float = Field(description="grams / unit weight")
    candidates: list[ItemCount] = Field(
        description="Item counts the change could be (several: undecidable; none: not items)"
    )
    count_before: ItemCount | None = Field(description="The count before, if it was known")


class SlotActivity(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="forbid", strict=True)
    slot: SlotId
    sku: SkuId
    picks: ItemCount = Field(description="Pick events")
    picked_items: ItemCount = Field(description="Items they took")
    puts: ItemCount = Field(description="Put-back (and restock) events")
    put_items: ItemCount = Field(description="Items they put")
    ambiguous: ItemCount = Field(description="Changes that could not be counted")


class StockActivity(EventBody):
    """Stream `stock`: picks and put-backs per slot over one interval (`[shelves]
    activity_interval_s`); slots without any are left out, an interval without any sends
    nothing."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "start": "2026-11-23T09:00:00.000+00:00",
                    "end": "2026-11-23T09:15:00.000+00:00",
                    "slots": [
                        {
                            "slot": "aisle3-2-l",
                            "sku": "4006381333931",
                            "picks": 5,
                            "picked_items": 6,
                            "puts": 2,
                            "put_items": 2,
                            "ambiguous": 0,
                        }
                    ],
                }
            ]
        }
    )
    start: Instant = Field(description="Start of the interval")
    end: Instant = Field(description="End of the interval")
    slots: list[SlotActivity] = Field(min_length=1)
