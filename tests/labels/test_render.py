"""Label rendering: exact panel size and palette, no anti-aliasing, real currency glyphs,
deterministic bytes and a content hash that follows template and font. (What each template
shows on each panel, and its legibility: test_legibility.py.)"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from gateway.drivers.contracts import LabelModel, LabelPalette
from gateway.labels.render import (
    DEFAULT_BOLD_FONT,
    DEFAULT_FONT,
    EDGE_CLEARANCE,
    PANEL_SIZES,
    LabelFace,
    LabelRenderer,
    format_money,
    panel_inks,
)

PALETTE_RGB = {
    LabelPalette.BW: {(255, 255, 255), (0, 0, 0)},
    LabelPalette.BWR: {(255, 255, 255), (0, 0, 0), (255, 0, 0)},
    LabelPalette.BWY: {(255, 255, 255), (0, 0, 0), (255, 255, 0)},
    LabelPalette.BWRY: {(255, 255, 255), (0, 0, 0), (255, 0, 0), (255, 255, 0)},
}
PLAIN = LabelFace("4006381333931", "Butter 250 g", "1.99", "EUR", "7.96", "kg")
PROMO = LabelFace(
    "4006381333931",
    "Butter 250 g",
    "0.99",
    "EUR",
    reference_price="1.99",
    promotion="flash-7",
    promotion_until=datetime(2025, 11, 23, 18, 0, tzinfo=UTC),
)


def colours(png: bytes) -> set[tuple[int, int, int]]:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    return {rgb for _count, rgb in image.getcolors(maxcolors=1 << 16) or []}


@pytest.mark.parametrize("size", PANEL_SIZES)
@pytest.mark.parametrize("palette", list(LabelPalette))
def test_every_panel_and_palette_gets_exact_size_and_only_its_colours(
    size: tuple[int, int], palette: LabelPalette
) -> None:
    renderer = LabelRenderer()
    for face in (PLAIN, PROMO, LabelFace("x", "No price yet", None)):
        rendered = renderer.render(face, LabelModel(*size, palette))
        image = Image.open(io.BytesIO(rendered.png))
        assert image.size == size
        used = colours(rendered.png)
        assert used <= PALETTE_RGB[palette]  # no anti-aliased greys, no foreign colours
        assert (0, 0, 0) in used
    promo = renderer.render(PROMO, LabelModel(*size, palette))
    if palette is not LabelPalette.BW:
        assert colours(promo.png) - {(255, 255, 255), (0, 0, 0)}  # sale price in the accent


@pytest.mark.parametrize("size", PANEL_SIZES)
@pytest.mark.parametrize("palette", list(LabelPalette))
def test_the_png_holds_exactly_the_drawn_pixels_and_only_the_panels_colours(
    size: tuple[int, int], palette: LabelPalette
) -> None:
    renderer = LabelRenderer()
    model = LabelModel(*size, palette)
    for face in (PLAIN, PROMO, LabelFace.not_in_use()):
        png = renderer.render(face, model).png
        depth = 1 if palette is LabelPalette.BW else 2
        assert png[24:26] == bytes([depth, 3])  # IHDR: bit depth, colour type palette
        decoded = Image.open(io.BytesIO(png))
        assert decoded.mode == "P"
        # The PNG's palette holds the panel's colours, white first, and nothing else.
        panel = [channel for ink in panel_inks(palette) for channel in ink.value]
        assert decoded.getpalette() == panel
        assert decoded.tobytes() == renderer.draw(face, model).tobytes()


def test_rendering_is_deterministic_and_the_hash_covers_the_font(tmp_path: Path) -> None:
    model = LabelModel(296, 128, LabelPalette.BWR)
    first = LabelRenderer().render(PROMO, model)
    again = LabelRenderer().render(PROMO, model)
    assert first.png == again.png
    assert first.content_hash == again.content_hash
    assert LabelRenderer().render(PLAIN, model).content_hash != first.content_hash
    condensed = DEFAULT_FONT.with_name("DejaVuSansCondensed.ttf")
    other = LabelRenderer(font=condensed, bold_font=DEFAULT_BOLD_FONT).render(PROMO, model)
    assert other.content_hash != first.content_hash


def test_currency_symbols_are_real_glyphs_not_boxes() -> None:
    font = ImageFont.truetype(str(DEFAULT_BOLD_FONT), 40)

    def bitmap(text: str) -> bytes:
        image = Image.new("1", (80, 60), 0)
        ImageDraw.Draw(image).text((5, 5), text, font=font, fill=1)
        return image.tobytes()

    missing = bitmap("\u0378")  # an unassigned code point: the font's "no glyph" box
    for symbol in ("€", "£", "¥", "$"):
        drawn = bitmap(symbol)
        assert drawn != missing, f"{symbol} renders as the missing-glyph box"
        assert any(drawn), f"{symbol} renders as nothing"
    assert format_money("1.99", "EUR") == "€1.99"  # en_GB, the default locale
    assert format_money("1.99", "GBP") == "£1.99"
    assert format_money("1.99", "EUR", "de_DE") == "1,99\xa0€"


def test_a_name_too_long_for_the_panel_is_shortened_never_cut_off() -> None:
    name = "Extra Virgin Olive Oil from Selected Cretan Groves, Cold Pressed, Unfiltered " * 3
    face = LabelFace("4006381333931", name, "12.49", "EUR")
    for width, height in PANEL_SIZES:
        image = LabelRenderer().draw(face, LabelModel(width, height, LabelPalette.BW))
        margin = max(EDGE_CLEARANCE, height // 28)
        rgb = image.convert("RGB")
        right_margin = [
            rgb.getpixel((x, y)) for x in range(width - margin, width) for y in range(height)
        ]
        assert set(right_margin) == {(255, 255, 255)}  # nothing drawn past the margin


def test_a_missing_font_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="fonts-dejavu-core"):
        LabelRenderer(font=tmp_path / "nope.ttf")


@pytest.mark.parametrize("size", PANEL_SIZES)
@pytest.mark.parametrize("palette", list(LabelPalette))
def test_the_not_in_use_face_is_black_on_white_and_deterministic(
    size: tuple[int, int], palette: LabelPalette
) -> None:
    model = LabelModel(*size, palette)
    blank = LabelRenderer().render(LabelFace.not_in_use(), model)
    image = Image.open(io.BytesIO(blank.png))
    assert image.size == size
    assert blank.png[24:26] == bytes([1 if palette is LabelPalette.BW else 2, 3])
    assert colours(blank.png) == {(255, 255, 255), (0, 0, 0)}  # no accent, no greys
    again = LabelRenderer().render(LabelFace.not_in_use(), model)
    assert (again.png, again.content_hash) == (blank.png, blank.content_hash)
    assert image.tobytes() == LabelRenderer().draw(LabelFace.not_in_use(), model).tobytes()
    for face in (PLAIN, PROMO, LabelFace("x", "No price yet", None)):
        assert LabelRenderer().render(face, model).content_hash != blank.content_hash
