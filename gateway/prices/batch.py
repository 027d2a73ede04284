"""The price batch HQ sends on ``down/prices`` (the signed payload), validated item by item.

A batch is ``full`` (replaces the whole price book) or ``delta`` (upserts ``items``, deletes the
SKUs in ``delete``); either may add ``promotions`` (a price for a SKU within a window) and cancel
earlier ones by id. Money is a decimal string — a JSON number is refused, never rounded. Big
batches come in parts (``part`` i of ``parts`` n, the same version), applied when all are in.
Every bad item is reported, not just the first: HQ fixes a rejected batch in one go.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    model_validator,
)

from gateway.errors import BatchRejectedError, MalformedMessageError
from gateway.sync.inbound import load_json

__all__ = ["Money", "PriceBatch", "PriceBatchHeader", "PriceItem", "Promotion", "parse_price_batch"]

Money = Annotated[
    StrictStr,
    Field(pattern=r"^\d{1,12}(\.\d{1,6})?$", description='Decimal string, e.g. "1.99"'),
]
Sku = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217, e.g. EUR")]
PromotionId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PriceItem(_Strict):
    sku: Sku
    price: Money
    currency: Currency
    unit_price: Money | None = None
    unit: Annotated[str, Field(min_length=1, max_length=16)] | None = None
    name: Annotated[str, Field(max_length=200)] | None = None
    reference_price: Money | None = Field(None, description='The "was" price shown beside it.')

    @model_validator(mode="after")
    def _unit_price_has_unit(self) -> Self:
        if (self.unit_price is None) != (self.unit is None):
            raise ValueError("unit_price and unit go together")
        return self


class Promotion(_Strict):
    id: PromotionId
    sku: Sku
    price: Money
    currency: Currency
    reference_price: Money | None = Field(
        None,
        description='The "was" price shown beside it; absent: the store\'s own prior price '
        '(with was_price = "lowest_30_days") or none.',
    )
    unit_price: Money | None = Field(
        None,
        description="The unit price at the promotion's price, in the SKU's unit, as HQ computed "
        "it from the net quantity; absent: the store derives it from the regular price and "
        "unit price (which can be a cent off when HQ's unit price was rounded).",
    )
    effective_from: AwareDatetime
    effective_to: AwareDatetime
    progressive: StrictBool = Field(
        False,
        description="A further step of the reduction in force right before effective_from "
        "(uninterrupted, at most that price): the prior price stays the one from before the "
        "first step (EU guidance 2021/C 526/02 on art. 6a(5)).",
    )

    @model_validator(mode="after")
    def _window(self) -> Self:
        if self.effective_to <= self.effective_from:
            raise ValueError("effective_to must be after effective_from")
        return self


class PriceBatchHeader(_Strict):
    v: Literal[1]
    type: Literal["prices"]
    scope: dict[str, list[str]]
    version: int = Field(ge=1, lt=2**63)
    kind: Literal["full", "delta"]
    part: int = Field(1, ge=1)
    parts: int = Field(1, ge=1, le=10_000)
    issued_at: AwareDatetime
    valid_until: AwareDatetime | None = None
    items: list[dict[str, Any]] = Field(default_factory=list)
    delete: list[Sku] = Field(default_factory=list)
    promotions: list[dict[str, Any]] = Field(default_factory=list)
    cancel_promotions: list[PromotionId] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.part > self.parts:
            raise ValueError(f"part {self.part} of {self.parts}")
        if self.kind == "full" and self.delete:
            raise ValueError("a full batch replaces the book: 'delete' belongs to deltas")
        return self


@dataclass(frozen=True, slots=True)
class PriceBatch:
    """One part of a batch, every item valid."""

    header: PriceBatchHeader
    items: tuple[PriceItem, ...]
    promotions: tuple[Promotion, ...] = field(default=())

    @property
    def version(self) -> int:
        return self.header.version


def _reason(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'item'}: {e['msg']}"
        for e in error.errors(include_url=False)
    )


def parse_price_batch(payload: bytes) -> PriceBatch:
    """Validate a (verified) payload; :class:`BatchRejectedError` lists every problem. The
    caller bounds the payload first (the downlink reads it with ``load_json``)."""
    try:
        header = PriceBatchHeader.model_validate_json(payload)
    except ValidationError as exc:
        version = _readable_version(payload)
        raise BatchRejectedError(version, [{"item": "batch", "reason": _reason(exc)}]) from None
    problems: list[dict[str, Any]] = []
    items: list[PriceItem] = []
    seen: set[str] = set()
    for index, raw in enumerate(header.items):
        label = raw.get("sku", index) if isinstance(raw, dict) else index
        try:
            item = PriceItem.model_validate(raw, strict=False)
        except ValidationError as exc:
            problems.append({"item": label, "reason": _reason(exc)})
            continue
        if item.sku in seen:
            problems.append({"item": label, "reason": "SKU listed twice in this part"})
            continue
        seen.add(item.sku)
        items.append(item)
    promotions: list[Promotion] = []
    for index, raw in enumerate(header.promotions):
        label = f"promotion {raw.get('id', index) if isinstance(raw, dict) else index}"
        try:
            promotions.append(Promotion.model_validate(raw))
        except ValidationError as exc:
            problems.append({"item": label, "reason": _reason(exc)})
    if problems:
        raise BatchRejectedError(header.version, problems, header=header)
    return PriceBatch(header, tuple(items), tuple(promotions))


def _readable_version(payload: bytes) -> int | None:
    try:
        document = load_json(payload)
    except MalformedMessageError:
        return None
    version = document.get("version") if isinstance(document, dict) else None
    # Within the header's own bounds: a version is stored (SQLite's integers are 64-bit).
    return version if type(version) is int and 1 <= version < 2**63 else None
