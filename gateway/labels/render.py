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
(a :class:`~gateway.labels.layout.LabelLayout`, which tests and the contact sheet read; the
template is :mod:`gateway.labels.template`, the cached glyphs :mod:`gateway.labels.glyphs`),
:meth:`LabelRenderer.draw` paints it. Rendering is exact and repeatable: a palette image with
the panel's colours only, text drawn with a 1-bit mask (no anti-aliasing to smear on e-paper),
a declared TrueType font (DejaVu Sans by default — Pillow's built-in bitmap font draws € and £
as empty boxes), deterministic PNG bytes (written here: 1 bit per pixel on black/white panels,
else 2, and a palette of the panel's colours only). The content hash covers the image, the
template version and the font files, so a new font or template means a new hash and a re-push.

Rendering is on the path of a store's backlog (60 000 labels after a price-list change), so
text measurements and formatting are cached and the PNG is encoded directly;
`bench/render.py` measures it against a bare Pillow draw.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from gateway.drivers.contracts import LabelModel, LabelPalette
from gateway.labels import glyphs
from gateway.labels.faces import LabelFace
from gateway.labels.layout import (
    EDGE_CLEARANCE,
    Box,
    Ink,
    LabelLayout,
    Part,
    PlacedBox,
    PlacedText,
    panel_inks,
)
from gateway.labels.localization import DEFAULT_LOCALE, ShelfLocale
from gateway.labels.template import Sheet, name_tokens

# The layout's values and the face are re-exported: they are what rendering takes and gives.
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


def format_money(amount: str, currency: str, locale: str = DEFAULT_LOCALE) -> str:
    """``1.99`` EUR → ``€1.99`` (en_GB), ``1,99 €`` (de_DE): CLDR's rules through Babel."""
    return ShelfLocale(locale).money(amount, currency)


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
        inks = panel_inks(model.palette)
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
                mask, (left, top, _, _) = glyphs.mask(
                    self._font_path(item.bold), item.size, item.text
                )
                draw.draw.draw_bitmap((item.x + left, item.baseline + top), mask, index[item.ink])
        return image

    def layout(self, face: LabelFace, model: LabelModel) -> LabelLayout:
        """Where every text and box of ``face`` goes on ``model``'s panel."""
        sheet = Sheet(self, model)
        if face.blank:
            sheet.blank()
        else:
            sheet.face(face)
        return LabelLayout(model.width, model.height, model.palette, tuple(sheet.items))

    def text_at(
        self, part: Part, text: str, *, bold: bool, size: int, x: int, baseline: int, ink: Ink
    ) -> PlacedText:
        """``text`` placed at ``(x, baseline)``, with the box its ink covers."""
        left, top, right, bottom = glyphs.mask(self._font_path(bold), size, text)[1]
        box = (x + left, baseline + top, x + right, baseline + bottom)
        return PlacedText(part, text, bold, size, x, baseline, box, ink)

    def measure(self, text: str, *, bold: bool, size: int) -> Box:
        """The ink box of ``text`` relative to its origin (anchor ``ls``)."""
        return glyphs.ink_box(self._font_path(bold), size, text)

    def advance(self, text: str, *, bold: bool, size: int) -> float:
        """How far ``text`` advances the pen: cheaper than its ink box, and within 2 px of it
        (glyphs may overhang their advance)."""
        return glyphs.advance(self._font_path(bold), size, text)

    def metrics(self, *, bold: bool, size: int) -> tuple[int, int]:
        """Ascent and descent of the font at ``size``."""
        return glyphs.metrics(self._font_path(bold), size)

    def _font_path(self, bold: bool) -> str:
        return self._bold if bold else self._font


# --- PNG -----------------------------------------------------------------------------------


def _encode_png(image: Image.Image, palette: LabelPalette) -> bytes:
    """A palette PNG of ``image`` with the panel's colours only: 1 bit per pixel for two
    colours, else 2; unfiltered rows, zlib level 6.

    Written here rather than by ``Image.save``: a fraction of the data to compress and none of
    the plugin's per-call overhead; the bytes depend only on the pixels and zlib.
    """
    inks = panel_inks(palette)
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
