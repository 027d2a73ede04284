"""Label rendering with Pillow: what a shelf label shows, at the panel's native resolution.

One template family scales to every common panel (152x152, 250x122, 296x128, 384x168,
400x300, 640x384, 800x480): product name (wrapped at word boundaries, shortened with an
ellipsis that keeps its quantity: "… 250 g"), the big price with its currency, and the unit
price — on a promotion too (Directive 98/6/EC). A promotion adds the struck-through reference
("was") price, at least the size of the unit price, and its end ("bis 05.12., 14:36"); its sale
price is red on panels with red, black on yellow on black/white/yellow panels (yellow text on
white is not legible), white on black on black/white ones. A SKU without a price shows a plain
"price unavailable" face — never a stale or invented price. An unbound label shows a neutral
"not in use" face (``LabelFace.blank``): no name, no SKU, no price. Nothing is drawn within
4 px of the panel's edge.

Money, unit prices, dates and words follow the store's locale and time zone
(:class:`~gateway.labels.localization.ShelfLocale`, ``[store] locale``).

Drawing goes in two steps: :meth:`LabelRenderer.layout` decides where every text and box goes
(a :class:`LabelLayout`, which tests and the contact sheet read), :meth:`LabelRenderer.draw`
paints it. Rendering is exact and repeatable: a palette image with the panel's colours only,
text drawn with a 1-bit mask (no anti-aliasing to smear on e-paper), a declared TrueType font
(DejaVu Sans by default — Pillow's built-in bitmap font draws € and £ as empty boxes),
deterministic PNG bytes (written here: 1 bit per pixel on black/white panels, else 2, and a
palette of the panel's colours only). The content hash covers the image, the template version
and the font files, so a new font or template means a new hash and a re-push.

Rendering is on the path of a store's backlog (60 000 labels after a price-list change), so
text measurements and formatting are cached and the PNG is encoded directly;
`bench/render.py` measures it against a bare Pillow draw.
"""

from __future__ import annotations

import hashlib
import math
import re
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum, StrEnum
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont

from gateway.drivers.contracts import LabelModel, LabelPalette
from gateway.labels.localization import DEFAULT_LOCALE, ShelfLocale

if TYPE_CHECKING:
    from PIL._imaging import ImagingCore

__all__ = [
    "DEFAULT_BOLD_FONT",
    "DEFAULT_FONT",
    "EDGE_CLEARANCE",
    "PANEL_SIZES",
    "TEMPLATE_VERSION",
    "Ink",
    "LabelFace",
    "LabelLayout",
    "LabelRenderer",
    "Part",
    "PlacedBox",
    "PlacedText",
    "RenderedLabel",
    "format_money",
    "name_tokens",
    "panel_inks",
]

TEMPLATE_VERSION = "shelf-3"  # 3: locale, unit price on promotions, legibility, panel palettes
DEFAULT_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
DEFAULT_BOLD_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")

#: The common panels (research/esl.md), width x height in pixels.
PANEL_SIZES: tuple[tuple[int, int], ...] = (
    (152, 152),
    (250, 122),
    (296, 128),
    (384, 168),
    (400, 300),
    (640, 384),
    (800, 480),
)

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


def format_money(amount: str, currency: str, locale: str = DEFAULT_LOCALE) -> str:
    """``1.99`` EUR → ``€1.99`` (en_GB), ``1,99 €`` (de_DE): CLDR's rules through Babel."""
    return ShelfLocale(locale).money(amount, currency)


@dataclass(frozen=True, slots=True)
class LabelFace:
    """What one label should show (from the price book at an instant)."""

    sku: str
    name: str | None
    price: str | None  # None: no price known for the SKU
    currency: str = "EUR"
    unit_price: str | None = None  # of ``price``: on a promotion, of the promotional price
    unit: str | None = None
    reference_price: str | None = None  # shown struck through ("was"), promotions only
    promotion: str | None = None  # id of the promotion in force
    promotion_until: datetime | None = None  # its end (aware), shown in the store's locale
    blank: bool = False  # an unbound label: "not in use", nothing of the SKU or price

    @classmethod
    def not_in_use(cls) -> LabelFace:
        """The neutral face of a label no SKU is bound to."""
        return cls(sku="", name=None, price=None, blank=True)


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


@dataclass(frozen=True, slots=True)
class RenderedLabel:
    png: bytes
    content_hash: str
    width: int
    height: int


class LabelRenderer:
    """Faces to images for one store: its fonts, locale (CLDR identifier) and time zone."""

    def __init__(
        self,
        font: Path = DEFAULT_FONT,
        bold_font: Path = DEFAULT_BOLD_FONT,
        *,
        locale: str = DEFAULT_LOCALE,
        timezone: str = "UTC",
    ) -> None:
        for path in (font, bold_font):
            if not path.is_file():
                raise FileNotFoundError(
                    f"label font {path} not found (install fonts-dejavu-core or set the path)"
                )
        self._font = str(font)
        self._bold = str(bold_font)
        self.locale = ShelfLocale(locale, timezone)
        digest = hashlib.sha256(TEMPLATE_VERSION.encode())
        for path in (font, bold_font):
            digest.update(path.read_bytes())
        self._style_digest = digest.hexdigest()

    @property
    def style(self) -> str:
        """What the images depend on besides faces and panels: template, fonts, locale, the
        label words of its language and time zone (labels drawn in another style are drawn
        again)."""
        words = self.locale.words
        spelled = repr(
            (
                words.promotion,
                words.until,
                words.was,
                words.not_in_use,
                words.price_unavailable,
                *sorted(words.units.items()),
            )
        )
        wording = hashlib.sha256(spelled.encode()).hexdigest()[:8]
        return (
            f"{TEMPLATE_VERSION}:{self._style_digest[:16]}:{self.locale.locale}:{wording}:"
            f"{self.locale.timezone}"
        )

    def render(self, face: LabelFace, model: LabelModel) -> RenderedLabel:
        png = _encode_png(self.draw(face, model), model.palette)
        content_hash = hashlib.sha256(self._style_digest.encode() + png).hexdigest()
        return RenderedLabel(png, content_hash, model.width, model.height)

    def draw(self, face: LabelFace, model: LabelModel) -> Image.Image:
        """The label as a palette image holding the panel's colours only."""
        layout = self.layout(face, model)
        inks = _PANEL_INKS[model.palette]
        index = {ink: inks.index(ink) for ink in inks}
        image = Image.new("P", (model.width, model.height), 0)
        image.putpalette([channel for ink in inks for channel in ink.value])
        draw = ImageDraw.Draw(image)
        draw.fontmode = "1"  # no anti-aliasing: e-paper shows exact pixels
        for item in layout.items:
            if isinstance(item, PlacedBox):
                left, top, right, bottom = item.box
                if item.outline:
                    draw.rectangle((left, top, right - 1, bottom - 1), outline=index[item.ink])
                else:
                    draw.rectangle((left, top, right - 1, bottom - 1), fill=index[item.ink])
            else:  # the cached mask ImageDraw.text would render for it, at the same place
                mask, (left, top, _, _) = _mask(self._font_path(item.bold), item.size, item.text)
                draw.draw.draw_bitmap((item.x + left, item.baseline + top), mask, index[item.ink])
        return image

    def layout(self, face: LabelFace, model: LabelModel) -> LabelLayout:
        """Where every text and box of ``face`` goes on ``model``'s panel."""
        sheet = _Sheet(self, model)
        if face.blank:
            sheet.blank()
        else:
            sheet.face(face)
        return LabelLayout(model.width, model.height, model.palette, tuple(sheet.items))

    def text_at(
        self, part: Part, text: str, *, bold: bool, size: int, x: int, baseline: int, ink: Ink
    ) -> PlacedText:
        """``text`` placed at ``(x, baseline)``, with the box its ink covers."""
        left, top, right, bottom = _mask(self._font_path(bold), size, text)[1]
        box = (x + left, baseline + top, x + right, baseline + bottom)
        return PlacedText(part, text, bold, size, x, baseline, box, ink)

    def measure(self, text: str, *, bold: bool, size: int) -> Box:
        """The ink box of ``text`` relative to its origin (anchor ``ls``)."""
        return _bbox(self._font_path(bold), size, text)

    def advance(self, text: str, *, bold: bool, size: int) -> float:
        """How far ``text`` advances the pen: cheaper than its ink box, and within 2 px of it
        (glyphs may overhang their advance)."""
        return _advance(self._font_path(bold), size, text)

    def metrics(self, *, bold: bool, size: int) -> tuple[int, int]:
        """Ascent and descent of the font at ``size``."""
        return _metrics(self._font_path(bold), size)

    def _font_path(self, bold: bool) -> str:
        return self._bold if bold else self._font


class _Sheet:
    """One layout in the making: the panel's geometry and what is placed so far."""

    def __init__(self, renderer: LabelRenderer, model: LabelModel) -> None:
        self.r = renderer
        self.words = renderer.locale.words
        self.width, self.height = model.width, model.height
        self.palette = model.palette
        self.margin = max(EDGE_CLEARANCE, model.height // 28)
        self.small = max(9, model.height // 11)
        self.gap = max(2, model.height // 60)
        self.items: list[PlacedText | PlacedBox] = []

    @property
    def inner_width(self) -> int:
        return self.width - 2 * self.margin

    def blank(self) -> None:
        """ "not in use" centred in black within a thin frame: nothing a shopper could read as
        a price."""
        m, width, height = self.margin, self.width, self.height
        self.items.append(PlacedBox(Part.FRAME, (m, m, width - m, height - m), Ink.BLACK, True))
        inner = max(4, height // 4)
        box = (m * 3, (height - inner) // 2, width - m * 3, (height + inner) // 2)
        self.fit(Part.NOTICE, self.words.not_in_use, box, Ink.BLACK, centred=True)

    def face(self, face: LabelFace) -> None:
        """From the bottom up: the footer, then the name from the top in what the price leaves
        it (a third of the panel at least), then the price in between."""
        name = face.name or face.sku
        least_price = self.height // 3
        if face.price is None:
            footer_top = self.footer([(Part.SKU, face.sku)])
            name_bottom = self.name(name, footer_top - self.gap - least_price)
            box = (self.margin, name_bottom + self.gap, self.width - self.margin, footer_top)
            self.fit(Part.NOTICE, self.words.price_unavailable, _above(box, self.gap), Ink.BLACK)
            return
        locale = self.r.locale
        unit = (
            locale.unit_price(face.unit_price, face.currency, face.unit)
            if face.unit_price is not None and face.unit is not None
            else None
        )
        price = locale.money(face.price, face.currency)
        if face.promotion is None:
            footer_top = self.footer([(Part.UNIT_PRICE, unit)] if unit else [])
            name_bottom = self.name(name, footer_top - self.gap - least_price)
            box = (self.margin, name_bottom + self.gap, self.width - self.margin, footer_top)
            self.fit(Part.PRICE, price, _above(box, self.gap), Ink.BLACK)
            return
        was = locale.money(face.reference_price, face.currency) if face.reference_price else None
        was_size = self._was_size(was) if was is not None else self.small
        validity = (
            locale.until(face.promotion_until)
            if face.promotion_until is not None
            else self.words.promotion
        )
        lines: list[tuple[Part, str | None]] = [(Part.VALIDITY, validity), (Part.UNIT_PRICE, unit)]
        footer_top = self.footer(lines, largest=was_size)
        was_height = 0
        if was is not None:
            ascent, descent = self.r.metrics(bold=False, size=was_size)
            was_height = self.gap + ascent + descent
        top = self.name(name, footer_top - self.gap - least_price - was_height)
        if was is not None:
            top = self.was(was, top, was_size)
        box = (self.margin, top + self.gap, self.width - self.margin, footer_top)
        self.sale_price(price, _above(box, self.gap))

    def name(self, text: str, lowest: int) -> int:
        """The name in bold from the top, in two lines (three on a square panel) as far as
        ``lowest`` leaves room: at the largest size down to three quarters of the panel's at
        which it fits whole, else at that smallest size shortened at a word boundary, keeping
        its quantity; returns its bottom."""
        tokens = name_tokens(text)
        if not tokens:
            return self.margin
        size = max(10, self.height // 8)
        smallest = max(10, size * 3 // 4)
        most_lines = 3 if self.height >= self.width else 2
        width = self.inner_width

        def room(size: int) -> int:
            ascent, descent = self.r.metrics(bold=True, size=size)
            spare = lowest - self.margin - ascent - descent
            return max(1, min(most_lines, 1 + spare // (ascent + descent)))

        while True:
            lines = self._wrap(tokens, size)
            if len(lines) <= room(size) and all(
                self._width(line, bold=True, size=size) <= width for line in lines
            ):
                break
            if size <= smallest:
                # A word wider than a line even so: smaller still, rather than cut inside it.
                while size > 10 and any(
                    self._width(t, bold=True, size=size) > width for t in tokens
                ):
                    size -= 1
                lines = self._name_lines(tokens, size, room(size))
                break
            size = max(smallest, size - max(1, size // 12))
        ascent, descent = self.r.metrics(bold=True, size=size)
        baseline = self.margin + ascent
        pitch = ascent + descent  # a line's accents never touch the descenders above
        for line in lines:
            self.place_left(Part.NAME, line, bold=True, size=size, baseline=baseline)
            baseline += pitch
        return baseline - pitch + descent

    def _name_lines(self, tokens: Sequence[str], size: int, max_lines: int) -> list[str]:
        width = self.inner_width
        lines = self._wrap(tokens, size)
        if len(lines) <= max_lines:
            return [self._fit_line(line, size) for line in lines]
        # Too long: as many whole words as fit, an ellipsis, and the quantity if it was cut.
        quantity = _last_quantity(tokens)
        placed = sum(len(line.split(" ")) for line in lines[:max_lines])  # an upper bound
        for count in range(min(placed, len(tokens)) - 1, 0, -1):
            head = list(tokens[:count])
            head[-1] = head[-1].rstrip(",;:-\u2013")  # "würzig, …" reads as "würzig …"
            kept = [tokens[quantity]] if quantity is not None and quantity >= count else []
            lines = self._wrap([*head, "…", *kept], size)
            if len(lines) <= max_lines and all(
                self._width(line, bold=True, size=size) <= width for line in lines
            ):
                return lines
        return [self._fit_line(tokens[0], size)]

    def _wrap(self, tokens: Sequence[str], size: int) -> list[str]:
        """Greedy: each line as many tokens as fit (a token alone on its line may not)."""
        width = self.inner_width
        lines: list[str] = []
        current = ""
        for token in tokens:
            candidate = f"{current} {token}" if current else token
            if not current or self._width(candidate, bold=True, size=size) <= width:
                current = candidate
            else:
                lines.append(current)
                current = token
        if current:
            lines.append(current)
        return lines

    def _fit_line(self, line: str, size: int) -> str:
        """A line as it is if it fits; a single word too wide even at the smallest size is cut
        with an ellipsis (the last resort)."""
        if self._width(line, bold=True, size=size) <= self.inner_width:
            return line
        return _shorten(self.r, line, self.inner_width, bold=True, size=size)

    def _was_size(self, money: str) -> int:
        """The unit price's size, unless the price is too wide for it."""
        size = self.small
        while size > 8 and self._width(money, bold=False, size=size) > self.inner_width:
            size -= 1
        return size

    def was(self, money: str, top: int, size: int) -> int:
        """ "statt 1,99 €", the price struck through, right-aligned below ``top``; returns the
        bottom."""
        right = self.width - self.margin
        money_box = self.r.measure(money, bold=False, size=size)
        ascent, descent = self.r.metrics(bold=False, size=size)
        baseline = top + self.gap + ascent
        x = right - money_box[2]
        placed = self.r.text_at(
            Part.WAS, money, bold=False, size=size, x=x, baseline=baseline, ink=Ink.BLACK
        )
        word = self.words.was
        word_box = self.r.measure(word, bold=False, size=size)
        word_x = placed.box[0] - size // 3 - word_box[2]
        if word_x + word_box[0] >= self.margin:  # the word only where the price leaves room
            self.items.append(
                self.r.text_at(
                    Part.WAS_WORD,
                    word,
                    bold=False,
                    size=size,
                    x=word_x,
                    baseline=baseline,
                    ink=Ink.BLACK,
                )
            )
        self.items.append(placed)
        digit_top = self.r.measure("0", bold=False, size=size)[1]
        thickness = max(2, size // 10)
        strike_top = baseline + digit_top // 2 - thickness // 2
        left, _, right_edge, _ = placed.box
        self.items.append(
            PlacedBox(
                Part.STRIKE, (left, strike_top, right_edge, strike_top + thickness), Ink.BLACK
            )
        )
        return baseline + descent

    def footer(self, lines: Sequence[tuple[Part, str | None]], *, largest: int = 0) -> int:
        """Small texts from the bottom up (the last of ``lines`` lowest; two on one line when
        they fit, the first then right-aligned); returns the top of the footer."""
        shown = [(part, text) for part, text in lines if text]
        if not shown:
            return self.height - self.margin
        size = min(self.small, largest) if largest else self.small
        width = self.inner_width
        if len(shown) == 2:
            first, second = (self._width(text, bold=False, size=size) for _, text in shown)
            if first + second + 2 * size <= width:
                (right_part, right_text), (left_part, left_text) = shown
                baseline = self._footer_baseline(size)
                self.place_left(left_part, left_text, bold=False, size=size, baseline=baseline)
                box = self.r.measure(right_text, bold=False, size=size)
                self.items.append(
                    self.r.text_at(
                        right_part,
                        right_text,
                        bold=False,
                        size=size,
                        x=self.width - self.margin - box[2],
                        baseline=baseline,
                        ink=Ink.BLACK,
                    )
                )
                return baseline - self.r.metrics(bold=False, size=size)[0]
        baseline = self._footer_baseline(size)
        top = baseline
        for part, text in reversed(shown):
            line_size = size
            while line_size > 8 and self._width(text, bold=False, size=line_size) > width:
                line_size -= 1
            shown_text = text
            if self._width(text, bold=False, size=line_size) > width:
                shown_text = _shorten(self.r, text, width, bold=False, size=line_size)
            ascent, descent = self.r.metrics(bold=False, size=line_size)
            self.place_left(part, shown_text, bold=False, size=line_size, baseline=baseline)
            top = baseline - ascent
            baseline = top - descent
        return top

    def _footer_baseline(self, size: int) -> int:
        return self.height - self.margin - self.r.metrics(bold=False, size=size)[1]

    def sale_price(self, price: str, box: Box) -> None:
        """Red on panels with red; on a plate otherwise: black on yellow, white on black."""
        inks = _PANEL_INKS[self.palette]
        if Ink.RED in inks:
            self.fit(Part.PRICE, price, box, Ink.RED)
            return
        plate, text = (Ink.YELLOW, Ink.BLACK) if Ink.YELLOW in inks else (Ink.BLACK, Ink.WHITE)
        self.items.append(PlacedBox(Part.PRICE_PLATE, box, plate))
        left, top, right, bottom = box
        pad = max(2, (bottom - top) // 10)
        self.fit(Part.PRICE, price, (left + pad, top + pad, right - pad, bottom - pad), text)

    def fit(self, part: Part, text: str, box: Box, ink: Ink, *, centred: bool = False) -> None:
        """``text`` in the largest bold size that fits ``box``, left-aligned (or centred),
        vertically centred."""
        left, top, right, bottom = box
        size = max(8, bottom - top)
        while True:
            x0, y0, x1, y1 = self.r.measure(text, bold=True, size=size)
            if size <= 8 or (x1 - x0 <= right - left and y1 - y0 <= bottom - top):
                break
            size -= max(1, size // 12)
        baseline = top + (bottom - top - (y1 - y0)) // 2 - y0
        x = left + (right - left - (x1 - x0)) // 2 - x0 if centred else left - x0
        self.items.append(
            self.r.text_at(part, text, bold=True, size=size, x=x, baseline=baseline, ink=ink)
        )

    def place_left(self, part: Part, text: str, *, bold: bool, size: int, baseline: int) -> None:
        """``text`` in black with its ink from the left margin; shortened with an ellipsis in
        the rare case its ink is wider than the width estimates said."""
        x = self.margin - min(0, self.r.measure(text, bold=bold, size=size)[0])
        placed = self.r.text_at(
            part, text, bold=bold, size=size, x=x, baseline=baseline, ink=Ink.BLACK
        )
        if placed.box[2] > self.width - self.margin:
            short = _shorten(self.r, text, self.inner_width, bold=bold, size=size)
            x = self.margin - min(0, self.r.measure(short, bold=bold, size=size)[0])
            placed = self.r.text_at(
                part, short, bold=bold, size=size, x=x, baseline=baseline, ink=Ink.BLACK
            )
        self.items.append(placed)

    def _width(self, text: str, *, bold: bool, size: int) -> int:
        """At least the width of ``text``'s ink from its origin (an estimate from its advance,
        which glyphs overhang by 2 px at most); the placed box is checked exactly."""
        return math.ceil(self.r.advance(text, bold=bold, size=size)) + max(2, size // 20)


# --- names ---------------------------------------------------------------------------------

_NUMBER = r"\d+(?:[.,]\d+)*"
# A word after which the next one belongs to the same quantity: a number ("250" g), a number
# with its multiplier ("6x" 0,33 l), a multiplier after a number ("6 x" 0,33 l).
_TIMES = "[x\u00d7]"  # x or the multiplication sign
_JOINS_NEXT = re.compile(rf"{_NUMBER}{_TIMES}?")
_MULTIPLIER = re.compile(_TIMES)  # joins the next word after a number: "6 x" 0,33 l
_QUANTITY = re.compile(rf"(?:{_NUMBER}\s?{_TIMES}\s?)?{_NUMBER}\s?(?:%|[^\W\d_][^\s]*)")


def name_tokens(name: str) -> tuple[str, ...]:
    """The words of a product name, a quantity kept as one token: ``Butter 250 g`` → ``Butter``,
    ``250 g``; ``Cola 6 x 0,33 l`` → ``Cola``, ``6 x 0,33 l``. Lines break only between
    tokens, so a quantity is never split or cut."""
    tokens: list[str] = []
    joining = False
    for word in name.split():
        joined = joining and bool(tokens)
        if joined:
            tokens[-1] = f"{tokens[-1]} {word}"
        else:
            tokens.append(word)
        joining = bool(_JOINS_NEXT.fullmatch(word) or (joined and _MULTIPLIER.fullmatch(word)))
    return tuple(tokens)


def _above(box: Box, gap: int) -> Box:
    """``box`` less ``gap`` at its bottom."""
    left, top, right, bottom = box
    return (left, top, right, bottom - gap)


def _last_quantity(tokens: Sequence[str]) -> int | None:
    for index in range(len(tokens) - 1, -1, -1):
        if _QUANTITY.fullmatch(tokens[index]):
            return index
    return None


def _shorten(renderer: LabelRenderer, text: str, width: int, *, bold: bool, size: int) -> str:
    """The longest prefix of ``text`` that fits ``width`` with an ellipsis."""
    fits, too_long = 0, len(text) + 1
    while too_long - fits > 1:  # a longer prefix is never narrower
        middle = (fits + too_long) // 2
        box = renderer.measure(text[:middle].rstrip() + "…", bold=bold, size=size)
        if box[2] - min(box[0], 0) <= width:
            fits = middle
        else:
            too_long = middle
    return text[:fits].rstrip() + "…"


# --- fonts and measurements ------------------------------------------------------------------


@cache
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


# Measurements use the font mode the text is drawn with ("1": monochrome hinting), exactly as
# ImageDraw places it. They are cached: a store's labels repeat prices, promotion ends and
# units, and wrapping measures the same words more than once.
@lru_cache(maxsize=4096)
def _bbox(path: str, size: int, text: str) -> Box:
    left, top, right, bottom = _font(path, size).getbbox(text, mode="1", anchor="ls")
    return (int(left), int(top), int(right), int(bottom))


@lru_cache(maxsize=16384)
def _advance(path: str, size: int, text: str) -> float:
    return _font(path, size).getlength(text, mode="1")


# The rendered text itself (what ImageDraw.text draws, and its box, which equals getbbox):
# cached, as promotion ends, "was" words, unit prices and common prices recur on thousands of
# labels, and a text rasterised in mode "1" costs far more than pasting it. Bounded by bytes (a
# mask is a byte per pixel; an 800x480 panel's price is some 100 kB), least recently used first.
_MASK_CACHE_BYTES = 8 * 1024 * 1024


class _MaskCache:
    def __init__(self, max_bytes: int) -> None:
        self._masks: OrderedDict[tuple[str, int, str], tuple[ImagingCore, Box]] = OrderedDict()
        self._bytes = 0
        self._max_bytes = max_bytes
        self._lock = threading.Lock()  # the render thread and `label preview` share it

    def get(self, path: str, size: int, text: str) -> tuple[ImagingCore, Box]:
        key = (path, size, text)
        with self._lock:
            found = self._masks.get(key)
            if found is not None:
                self._masks.move_to_end(key)
                return found
        mask, (left, top) = _font(path, size).getmask2(text, "1", anchor="ls")
        width, height = mask.size
        entry = (mask, (left, top, left + width, top + height))
        with self._lock:
            if key not in self._masks:
                self._masks[key] = entry
                self._bytes += width * height
                while self._bytes > self._max_bytes and len(self._masks) > 1:
                    _, (old, _) = self._masks.popitem(last=False)
                    self._bytes -= old.size[0] * old.size[1]
        return entry


_mask = _MaskCache(_MASK_CACHE_BYTES).get


@cache
def _metrics(path: str, size: int) -> tuple[int, int]:
    ascent, descent = _font(path, size).getmetrics()
    return int(ascent), int(descent)


# --- PNG -----------------------------------------------------------------------------------


def _encode_png(image: Image.Image, palette: LabelPalette) -> bytes:
    """A palette PNG of ``image`` with the panel's colours only: 1 bit per pixel for two
    colours, else 2; unfiltered rows, zlib level 6.

    Written here rather than by ``Image.save``: a fraction of the data to compress and none of
    the plugin's per-call overhead; the bytes depend only on the pixels and zlib.
    """
    inks = _PANEL_INKS[palette]
    depth = 1 if len(inks) == 2 else 2
    width, height = image.size
    stride = (width * depth + 7) // 8
    packed = memoryview(image.tobytes("raw", f"P;{depth}"))
    rows = b"".join(
        b"\0" + packed[offset : offset + stride] for offset in range(0, stride * height, stride)
    )
    header = struct.pack(">IIBBBBB", width, height, depth, 3, 0, 0, 0)  # colour type: palette
    plte = bytes(channel for ink in inks for channel in ink.value)
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", header),
            _png_chunk(b"PLTE", plte),
            _png_chunk(b"IDAT", zlib.compress(rows, 6)),
            _png_chunk(b"IEND", b""),
        )
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
