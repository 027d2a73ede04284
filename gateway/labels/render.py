"""Label rendering with Pillow: what a shelf label shows, at the panel's native resolution.

One template family scales to every common panel (152x152, 250x122, 296x128, 384x168,
400x300, 640x384, 800x480): product name (wrapped, shortened with an ellipsis to fit), the big
price with its currency, the unit price, and for a promotion the struck-through reference
("was") price plus the sale price in the accent colour (red or yellow; inverted on black/white
panels) and the promotion's validity. A SKU without a price shows a plain "price unavailable"
face — never a stale or invented price. An unbound label shows a neutral "not in use" face
(``LabelFace.blank``): no name, no SKU, no price.

Rendering is exact and repeatable: a palette image with the panel's colours only, text drawn
with a 1-bit mask (no anti-aliasing to smear on e-paper), a declared TrueType font (DejaVu Sans
by default — Pillow's built-in bitmap font draws € and £ as empty boxes), deterministic PNG
bytes (2 bits per pixel, written here). The content hash covers the image, the template version
and the font files, so a new font or template means a new hash and a re-push.

Rendering is on the path of a store's backlog (60 000 labels after a price-list change), so
text measurements are cached and the PNG is encoded directly; `bench/render.py` measures it
against a bare Pillow draw.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from gateway.drivers.contracts import LabelModel, LabelPalette

__all__ = [
    "DEFAULT_BOLD_FONT",
    "DEFAULT_FONT",
    "PANEL_SIZES",
    "TEMPLATE_VERSION",
    "LabelFace",
    "LabelRenderer",
    "RenderedLabel",
    "format_money",
]

TEMPLATE_VERSION = "shelf-2"  # 2: 2-bit PNG, the pixels of shelf-1
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

_WHITE, _BLACK, _RED, _YELLOW = 0, 1, 2, 3
_RGB = {_WHITE: (255, 255, 255), _BLACK: (0, 0, 0), _RED: (255, 0, 0), _YELLOW: (255, 255, 0)}
_PALETTE = [channel for index in range(4) for channel in _RGB[index]]
_PALETTE_INDICES = {
    LabelPalette.BW: (_WHITE, _BLACK),
    LabelPalette.BWR: (_WHITE, _BLACK, _RED),
    LabelPalette.BWY: (_WHITE, _BLACK, _YELLOW),
    LabelPalette.BWRY: (_WHITE, _BLACK, _RED, _YELLOW),
}
_SYMBOLS = {"EUR": "€", "GBP": "£", "USD": "$", "JPY": "¥", "CHF": "CHF", "PLN": "zł"}
_SYMBOL_FIRST = {"GBP", "USD", "JPY"}
_NOT_IN_USE = "not in use"


def format_money(amount: str, currency: str) -> str:
    """``1.99`` EUR → ``1.99 €``; GBP/USD/JPY put the symbol first (``£1.99``)."""
    symbol = _SYMBOLS.get(currency, currency)
    if currency in _SYMBOL_FIRST:
        return f"{symbol}{amount}"
    return f"{amount} {symbol}"


@dataclass(frozen=True, slots=True)
class LabelFace:
    """What one label should show (from the price book at an instant)."""

    sku: str
    name: str | None
    price: str | None  # None: no price known for the SKU
    currency: str = "EUR"
    unit_price: str | None = None
    unit: str | None = None
    reference_price: str | None = None  # shown struck through ("was"), promotions only
    promotion: str | None = None  # id of the promotion in force
    promotion_text: str | None = None  # e.g. "until 23.11. 19:00"
    blank: bool = False  # an unbound label: "not in use", nothing of the SKU or price

    @classmethod
    def not_in_use(cls) -> LabelFace:
        """The neutral face of a label no SKU is bound to."""
        return cls(sku="", name=None, price=None, blank=True)


@dataclass(frozen=True, slots=True)
class RenderedLabel:
    png: bytes
    content_hash: str
    width: int
    height: int


class LabelRenderer:
    def __init__(self, font: Path = DEFAULT_FONT, bold_font: Path = DEFAULT_BOLD_FONT) -> None:
        for path in (font, bold_font):
            if not path.is_file():
                raise FileNotFoundError(
                    f"label font {path} not found (install fonts-dejavu-core or set the path)"
                )
        self._font = font
        self._bold = bold_font
        digest = hashlib.sha256(TEMPLATE_VERSION.encode())
        for path in (font, bold_font):
            digest.update(path.read_bytes())
        self._style_digest = digest.hexdigest()

    def render(self, face: LabelFace, model: LabelModel) -> RenderedLabel:
        png = _encode_png(self.draw(face, model))
        content_hash = hashlib.sha256(self._style_digest.encode() + png).hexdigest()
        return RenderedLabel(png, content_hash, model.width, model.height)

    def draw(self, face: LabelFace, model: LabelModel) -> Image.Image:
        width, height = model.width, model.height
        image = Image.new("P", (width, height), _WHITE)
        image.putpalette(_PALETTE)
        draw = ImageDraw.Draw(image)
        draw.fontmode = "1"  # no anti-aliasing: e-paper shows exact pixels
        if face.blank:
            self._draw_blank(draw, width, height)
            return image
        accent = _accent(model.palette)
        margin = max(3, height // 28)
        name_size = max(10, height // 8)
        name_font = self._font_at(self._bold, name_size)
        lines = _wrap(face.name or face.sku, name_font, width - 2 * margin, 2)
        y = margin
        for line in lines:
            draw.text((margin, y), line, font=name_font, fill=_BLACK)
            y += name_size + 2
        bottom_size = max(9, height // 11)
        bottom_font = self._font_at(self._font, bottom_size)
        bottom_y = height - margin - bottom_size
        if face.price is None:
            self._fit_text(draw, "price unavailable", (margin, y, width - margin, bottom_y), _BLACK)
            draw.text((margin, bottom_y), face.sku, font=bottom_font, fill=_BLACK)
            return image
        price_text = format_money(face.price, face.currency)
        price_box = (margin, y + 1, width - margin, bottom_y - 2)
        if face.promotion is not None:
            if face.reference_price is not None:
                was = format_money(face.reference_price, face.currency)
                was_font = self._font_at(self._font, bottom_size)
                was_width = int(_length(was_font, was))
                x = width - margin - was_width
                draw.text((x, y), was, font=was_font, fill=_BLACK)
                strike_y = y + bottom_size // 2 + 1
                draw.line((x - 1, strike_y, x + was_width + 1, strike_y), fill=_BLACK, width=2)
                price_box = (margin, y + bottom_size + 3, width - margin, bottom_y - 2)
            if accent is None:  # black/white panel: the sale price in an inverted box
                draw.rectangle(price_box, fill=_BLACK)
                self._fit_text(draw, price_text, _inset(price_box, 2), _WHITE)
            else:
                self._fit_text(draw, price_text, price_box, accent)
            footer = face.promotion_text or "promotion"
        else:
            self._fit_text(draw, price_text, price_box, _BLACK)
            footer = ""
        if face.unit_price is not None and face.unit is not None:
            unit_text = f"{format_money(face.unit_price, face.currency)}/{face.unit}"
            footer = f"{unit_text}  {footer}".strip()
        footer = _shorten(footer, bottom_font, width - 2 * margin)
        draw.text((margin, bottom_y), footer, font=bottom_font, fill=_BLACK)
        return image

    def _draw_blank(self, draw: ImageDraw.ImageDraw, width: int, height: int) -> None:
        """Draw "not in use" centred in black within a thin frame: nothing a shopper could
        read as a price."""
        margin = max(3, height // 28)
        draw.rectangle((margin, margin, width - 1 - margin, height - 1 - margin), outline=_BLACK)
        inner = max(4, height // 4)
        box = (margin * 3, (height - inner) // 2, width - margin * 3, (height + inner) // 2)
        self._fit_text(draw, _NOT_IN_USE, box, _BLACK, centred=True)

    def _font_at(self, path: Path, size: int) -> ImageFont.FreeTypeFont:
        return _load_font(str(path), size)

    def _fit_text(
        self,
        draw: ImageDraw.ImageDraw,
        text: str,
        box: tuple[int, int, int, int],
        fill: int,
        *,
        centred: bool = False,
    ) -> None:
        """The largest bold size that fits ``box``, left-aligned (or centred), vertically
        centred."""
        left, top, right, bottom = box
        size = max(8, bottom - top)
        while True:
            font = self._font_at(self._bold, size)
            x0, y0, x1, y1 = _bbox(font, text)
            if size <= 8 or (x1 - x0 <= right - left and y1 - y0 <= bottom - top):
                break
            size -= max(1, size // 12)
        y = top + (bottom - top - (y1 - y0)) // 2 - y0
        x = left + (right - left - (x1 - x0)) // 2 if centred else left
        draw.text((x - x0, y), text, font=font, fill=fill)


@cache
def _load_font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


def _accent(palette: LabelPalette) -> int | None:
    indices = _PALETTE_INDICES[palette]
    if _RED in indices:
        return _RED
    if _YELLOW in indices:
        return _YELLOW
    return None


def _inset(box: tuple[int, int, int, int], by: int) -> tuple[int, int, int, int]:
    left, top, right, bottom = box
    return (left + by, top + by, right - by, bottom - by)


# Measurements use the font mode the text is drawn with ("1": monochrome hinting), exactly as
# ImageDraw measures for a palette image. They are cached: a store's labels repeat prices,
# promotion texts and units, and wrapping measures the same lines more than once.
@lru_cache(maxsize=8192)
def _length(font: ImageFont.FreeTypeFont, text: str) -> float:
    return font.getlength(text, mode="1")


@lru_cache(maxsize=4096)
def _bbox(font: ImageFont.FreeTypeFont, text: str) -> tuple[float, float, float, float]:
    return font.getbbox(text, mode="1")


def _wrap(
    text: str,
    font: ImageFont.FreeTypeFont,
    width: int,
    max_lines: int,
) -> Sequence[str]:
    words = text.split()
    whole = " ".join(words)
    if _length(font, whole) <= width:  # then every prefix fits too: one line, as below
        return [whole] if whole else []
    lines: list[str] = []
    current = ""
    for word in words:
        candidate = f"{current} {word}".strip()
        if _length(font, candidate) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        current = word
        if len(lines) == max_lines:
            break
    if current and len(lines) < max_lines:
        lines.append(current)
    consumed = " ".join(lines)
    if len(consumed) < len(whole) or any(_length(font, line) > width for line in lines):
        lines[-1] = _shorten(lines[-1] + " …", font, width, force=True)
    return [_shorten(line, font, width) for line in lines]


def _shorten(
    text: str,
    font: ImageFont.FreeTypeFont,
    width: int,
    *,
    force: bool = False,
) -> str:
    """``text`` if it fits, else its longest prefix that fits with an ellipsis."""
    if not force and _length(font, text) <= width:
        return text
    base = text.removesuffix(" …").rstrip()
    # Binary search over prefix lengths: a longer prefix is never narrower.
    fits, too_long = 0, len(base) + 1
    while too_long - fits > 1:
        middle = (fits + too_long) // 2
        prefix = base[:middle].rstrip()
        if not prefix or _length(font, prefix + "…") <= width:
            fits = middle
        else:
            too_long = middle
    return base[:fits].rstrip() + "…"


def _encode_png(image: Image.Image) -> bytes:
    """A 2-bit palette PNG of ``image`` (indices 0-3): unfiltered rows, zlib level 6.

    Written here rather than by ``Image.save``: a quarter of the data to compress and none of
    the plugin's per-call overhead; the bytes depend only on the pixels and zlib.
    """
    width, height = image.size
    stride = (width + 3) // 4
    packed = memoryview(image.tobytes("raw", "P;2"))
    rows = b"".join(
        b"\0" + packed[offset : offset + stride] for offset in range(0, stride * height, stride)
    )
    header = struct.pack(">IIBBBBB", width, height, 2, 3, 0, 0, 0)  # bit depth 2, palette
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", header),
            _png_chunk(b"PLTE", bytes(_PALETTE)),
            _png_chunk(b"IDAT", zlib.compress(rows, 6)),
            _png_chunk(b"IEND", b""),
        )
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
