"""Stream ``receipts``, price batches: stored, applied or rejected at the store
(:mod:`gateway.prices.downlink`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from gateway.wire.envelope import EventBody

__all__ = [
    "BatchKind",
    "PriceApplied",
    "PriceProblem",
    "PriceRejected",
    "PriceStored",
]

#: A price batch: the whole book, or changes to it.
BatchKind = Literal["full", "delta"]


class PriceStored(EventBody):
    """Stream `receipts`: every part of a price batch version is verified and committed at
    the store (it is then applied in version order, or rejected)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"version": 42, "kind": "delta", "parts": 3}]}
    )
    version: int = Field(ge=1, description="The batch version", examples=[42])
    kind: BatchKind = Field(description="Batch kind", examples=["delta"])
    parts: int = Field(ge=1, description="How many parts it came in", examples=[3])


class PriceApplied(EventBody):
    """Stream `receipts`: a price batch version is in the store's price book (one
    transaction with this receipt)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "version": 42,
                    "kind": "delta",
                    "parts": 1,
                    "items": 120,
                    "deleted": 2,
                    "promotions": 1,
                    "cancelled_promotions": 0,
                    "superseded": [],
                }
            ]
        }
    )
    version: int = Field(ge=1, description="The batch version", examples=[42])
    kind: BatchKind = Field(description="Batch kind", examples=["delta"])
    parts: int = Field(ge=1, description="Parts it came in", examples=[1])
    items: int = Field(ge=0, description="Prices set", examples=[120])
    deleted: int = Field(ge=0, description="SKUs deleted (delta)", examples=[2])
    promotions: int = Field(ge=0, description="Promotions added or replaced", examples=[1])
    cancelled_promotions: int = Field(ge=0, description="Promotions cancelled", examples=[0])
    superseded: list[int] = Field(
        description="Held versions a full batch made moot (their content is never applied)",
        examples=[[]],
    )


class PriceProblem(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="forbid", strict=True)
    item: str | int = Field(description="SKU, index, promotion id, or `batch`")
    reason: str = Field(description="What is wrong with it")

    @classmethod
    def recorded(cls, problem: Mapping[str, Any]) -> Self:
        """A problem as the store records it (``{"item": …, "reason": …}``). ``item`` is the
        SKU as HQ sent it: one that is no string or integer (null, a list…) is reported as
        its JSON text."""
        item = problem.get("item")
        if not isinstance(item, str) and type(item) is not int:
            item = json.dumps(item, default=str)
        return cls(item=item, reason=str(problem.get("reason", "")))


class PriceRejected(EventBody):
    """Stream `receipts`: a price batch version was not applied. A version with invalid
    content is consumed (the next version follows it, nothing of it is applied); a version
    whose parts did not all arrive in time expires and is asked for again by resync."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "version": 43,
                    "reason": "invalid batch",
                    "problems": [
                        {"item": "4006381333931", "reason": "price: Input should be a string"}
                    ],
                }
            ]
        }
    )
    version: int = Field(ge=1, description="The batch version", examples=[43])
    reason: str = Field(description="`invalid batch` or `incomplete: ...`")
    problems: list[PriceProblem] = Field(description="Every bad item (empty if incomplete)")
