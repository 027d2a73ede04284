"""``storegw label preview SKU``: what a label for a SKU shows right now, as a PNG."""

from __future__ import annotations

import base64
import re
from datetime import datetime
from typing import Any

from gateway.clock import isoformat_utc
from gateway.drivers.contracts import LabelModel, LabelPalette
from gateway.labels.render import LabelFace, LabelRenderer
from gateway.prices.book import PriceBook

__all__ = ["parse_model", "preview_label"]

_MODEL = re.compile(r"^(\d{2,4})x(\d{2,4}):(bw|bwr|bwy|bwry)$")


def parse_model(text: str) -> LabelModel:
    """``296x128:bwr`` → a label model (width x height : palette)."""
    match = _MODEL.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"label model {text!r}: expected WIDTHxHEIGHT:PALETTE, e.g. 296x128:bwr")
    return LabelModel(int(match[1]), int(match[2]), LabelPalette(match[3]))


async def preview_label(book: PriceBook, *, sku: str, model: str, at: datetime) -> dict[str, Any]:
    if not sku:
        raise ValueError("name a SKU")
    label_model = parse_model(model)
    shelf = await book.shelf_price(sku, at)
    if shelf is None:
        face = LabelFace(sku, None, None)
    else:
        face = LabelFace(
            sku=sku,
            name=shelf.name,
            price=shelf.price,
            currency=shelf.currency,
            unit_price=shelf.unit_price,
            unit=shelf.unit,
            reference_price=shelf.reference_price if shelf.promotion else None,
            promotion=shelf.promotion,
        )
    rendered = LabelRenderer().render(face, label_model)
    return {
        "sku": sku,
        "model": model,
        "at": isoformat_utc(at),
        "price": shelf.as_dict() if shelf is not None else None,
        "content_hash": rendered.content_hash,
        "png_base64": base64.b64encode(rendered.png).decode(),
    }
