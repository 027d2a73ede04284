"""``storegw label preview SKU``: what a label for a SKU shows, as a PNG — the price book's
face for the instant, drawn by the label pipeline's own renderer, so the bytes are the ones a
label on that panel gets."""

from __future__ import annotations

import base64
import re
from datetime import datetime
from typing import Any, Protocol

from gateway.clock import isoformat_utc
from gateway.drivers.contracts import LabelModel, LabelPalette
from gateway.labels.render import RenderedLabel
from gateway.prices.book import PriceBook

__all__ = ["FaceRenderer", "parse_model", "preview_label"]

_MODEL = re.compile(r"^(\d{2,4})x(\d{2,4}):(bw|bwr|bwy|bwry)$")


def parse_model(text: str) -> LabelModel:
    """``296x128:bwr`` → a label model (width x height : palette)."""
    match = _MODEL.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"label model {text!r}: expected WIDTHxHEIGHT:PALETTE, e.g. 296x128:bwr")
    return LabelModel(int(match[1]), int(match[2]), LabelPalette(match[3]))


class FaceRenderer(Protocol):
    """Draws a planned face (the label pipeline)."""

    async def render_face(self, face: str, model: LabelModel) -> RenderedLabel: ...


async def preview_label(
    book: PriceBook, renderer: FaceRenderer, *, sku: str, model: str, at: datetime
) -> dict[str, Any]:
    """The face of ``sku`` at ``at`` on ``model`` (``WIDTHxHEIGHT:PALETTE``), with its PNG."""
    if not sku:
        raise ValueError("name a SKU")
    label_model = parse_model(model)
    face = await book.face(sku, at)
    rendered = await renderer.render_face(face.face, label_model)
    shelf = face.shelf_price()
    return {
        "sku": sku,
        "model": model,
        "at": isoformat_utc(at),
        "face": face.as_dict(),
        "price_version": face.version,
        "price": shelf.as_dict() if shelf is not None else None,
        "content_hash": rendered.content_hash,
        "png_base64": base64.b64encode(rendered.png).decode(),
    }
