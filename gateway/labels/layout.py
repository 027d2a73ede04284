"""A label's layout: everything a renderer places on a panel — texts and boxes, by what they
are (:class:`Part`) and their ink — as values the legibility tests and the contact sheets read.
Where things go is the template's (:mod:`gateway.labels.template`); painting is the
renderer's (:mod:`gateway.labels.render`)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum

from gateway.drivers.contracts import LabelPalette

__all__ = [
    "EDGE_CLEARANCE",
    "Box",
    "Ink",
    "LabelLayout",
    "Part",
    "PlacedBox",
    "PlacedText",
    "panel_inks",
]

#: Pixels along every edge that stay white (panel bezels cover the outermost ones).
EDGE_CLEARANCE = 4

Box = tuple[int, int, int, int]  # left, top, right, bottom; right and bottom exclusive


class Ink(Enum):
    WHITE = (255, 255, 255)
    BLACK = (0, 0, 0)
    RED = (255, 0, 0)
    YELLOW = (255, 255, 0)


_PANEL_INKS = {
    LabelPalette.BW: (Ink.WHITE, Ink.BLACK),
    LabelPalette.BWR: (Ink.WHITE, Ink.BLACK, Ink.RED),
    LabelPalette.BWY: (Ink.WHITE, Ink.BLACK, Ink.YELLOW),
    LabelPalette.BWRY: (Ink.WHITE, Ink.BLACK, Ink.RED, Ink.YELLOW),
}


def panel_inks(palette: LabelPalette) -> tuple[Ink, ...]:
    """The panel's colours, in the order of its PNG palette (white first)."""
    return _PANEL_INKS[palette]


class Part(StrEnum):
    """What a placed text or box is."""

    NAME = "name"
    WAS_WORD = "was_word"  # "statt", before the struck-through price
    WAS = "was"  # the struck-through reference price
    STRIKE = "strike"  # the line through it
    PRICE = "price"
    PRICE_PLATE = "price_plate"  # the box behind a sale price (black/white, yellow panels)
    UNIT_PRICE = "unit_price"
    VALIDITY = "validity"  # "bis 05.12., 14:36" or "Aktion"
    NOTICE = "notice"  # "price unavailable", "not in use"
    SKU = "sku"
    FRAME = "frame"  # the outline of the "not in use" face


@dataclass(frozen=True, slots=True)
class PlacedText:
    """A text drawn at ``(x, baseline)`` (Pillow anchor ``ls``); ``box`` bounds its ink."""

    part: Part
    text: str
    bold: bool
    size: int
    x: int
    baseline: int
    box: Box
    ink: Ink


@dataclass(frozen=True, slots=True)
class PlacedBox:
    """A filled rectangle, or its one-pixel outline."""

    part: Part
    box: Box
    ink: Ink
    outline: bool = False


@dataclass(frozen=True, slots=True)
class LabelLayout:
    """Everything drawn on a label, in painting order."""

    width: int
    height: int
    palette: LabelPalette
    items: tuple[PlacedText | PlacedBox, ...]

    def texts(self, part: Part) -> list[PlacedText]:
        return [item for item in self.items if isinstance(item, PlacedText) and item.part is part]

    def boxes(self, part: Part) -> list[PlacedBox]:
        return [item for item in self.items if isinstance(item, PlacedBox) and item.part is part]
