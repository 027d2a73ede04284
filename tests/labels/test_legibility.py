"""Legibility of every template on every panel, checked on the rendered images.

The templates and locales are those of the contact sheets (docs/labels/,
``gateway.labels.contact_sheet``). Each image is first checked against its layout — every
text's pixels are where the layout says, drawn again here with Pillow's own ``ImageDraw.text``,
and nothing is drawn outside the layout's boxes — so that the properties below, read from the
layout (sizes, places, colours), hold for the pixels:

- nothing within 4 px of the panel's edge;
- the struck-through "was" price at least the size of the unit price;
- a promotion keeps its unit price (Directive 98/6/EC);
- no yellow text: on black/white/yellow panels the sale price is black on a yellow plate;
- the PNG's palette holds the panel's colours only;
- names break at word boundaries, a quantity is never split or cut ("250 g" never "25…").
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageChops, ImageDraw, ImageFont

from gateway.drivers.contracts import LabelModel, LabelPalette
from gateway.labels.contact_sheet import SHEETS, TEMPLATES, render_sheet
from gateway.labels.render import (
    DEFAULT_BOLD_FONT,
    DEFAULT_FONT,
    EDGE_CLEARANCE,
    PANEL_SIZES,
    Ink,
    LabelFace,
    LabelLayout,
    LabelRenderer,
    Part,
    PlacedBox,
    PlacedText,
    name_tokens,
    panel_inks,
)

CASES = [
    (locale, timezone, palette, size)
    for locale, timezone, palettes in SHEETS
    for palette in palettes
    for size in PANEL_SIZES
]


def indices(image: Image.Image, box: tuple[int, int, int, int] | None = None) -> Image.Image:
    """The palette indices of ``image`` (or of ``box`` in it) as an "L" image."""
    part = image.crop(box) if box is not None else image
    return Image.frombytes("L", part.size, part.tobytes())


def where(image: Image.Image, wanted: set[int]) -> Image.Image:
    """255 where the index is one of ``wanted``, else 0."""
    return image.point([255 if value in wanted else 0 for value in range(256)])


def text_mask(item: PlacedText, size: tuple[int, int]) -> Image.Image:
    """``item`` drawn on its own with Pillow's ImageDraw.text (255: ink)."""
    font = ImageFont.truetype(str(DEFAULT_BOLD_FONT if item.bold else DEFAULT_FONT), item.size)
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    draw.fontmode = "1"
    draw.text((item.x, item.baseline), item.text, font=font, fill=255, anchor="ls")
    return mask


def check_layout_is_the_image(layout: LabelLayout, image: Image.Image) -> None:
    """Every text of ``layout`` is drawn exactly where it says, in its ink; every box is filled
    with its ink (where no text covers it); nothing is drawn outside the layout's boxes."""
    inks = panel_inks(layout.palette)
    size = (layout.width, layout.height)
    pixels = indices(image)
    covered = Image.new("L", size, 0)
    draw = ImageDraw.Draw(covered)
    for item in layout.items:
        left, top, right, bottom = item.box
        draw.rectangle((left, top, right - 1, bottom - 1), fill=255)
    drawn = where(pixels, set(range(1, len(inks))))
    assert ImageChops.subtract(drawn, covered).getbbox() is None, "ink outside the layout"
    texts = [item for item in layout.items if isinstance(item, PlacedText)]
    for item in texts:
        mask = text_mask(item, size)
        assert mask.getbbox() is not None, f"{item.text!r} draws nothing"
        left, top, right, bottom = mask.getbbox()
        box_left, box_top, box_right, box_bottom = item.box
        assert box_left <= left, item
        assert box_top <= top, item
        assert right <= box_right, item
        assert bottom <= box_bottom, item
        in_ink = where(pixels, {inks.index(item.ink)})
        assert ImageChops.subtract(mask, in_ink).getbbox() is None, f"{item.text!r} not drawn"
    for plate in (item for item in layout.items if isinstance(item, PlacedBox)):
        if plate.outline:
            continue
        allowed = {inks.index(plate.ink)} | {
            inks.index(text.ink) for text in texts if overlaps(text.box, plate.box)
        }
        region = indices(image, plate.box)
        assert where(region, allowed).getextrema() == (255, 255), f"{plate.part} not filled"


def check_no_text_overlaps(layout: LabelLayout, what: str) -> None:
    texts = [item for item in layout.items if isinstance(item, PlacedText)]
    for index, first in enumerate(texts):
        for second in texts[index + 1 :]:
            assert not overlaps(first.box, second.box), f"{what}: {first} over {second}"
    for plate in layout.boxes(Part.PRICE_PLATE):  # a plate holds its price, nothing else
        for text in texts:
            if text.part is not Part.PRICE:
                assert not overlaps(plate.box, text.box), f"{what}: {text} on the plate"


def digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def rendered(
    renderer: LabelRenderer, face: LabelFace, model: LabelModel
) -> tuple[LabelLayout, Image.Image]:
    layout = renderer.layout(face, model)
    png = renderer.render(face, model).png
    image = Image.open(io.BytesIO(png))
    image.load()
    check_layout_is_the_image(layout, image)
    return layout, image


def every_template(
    locale: str, timezone: str, palette: LabelPalette, size: tuple[int, int]
) -> Iterator[tuple[str, LabelFace, LabelLayout, Image.Image]]:
    renderer = LabelRenderer(locale=locale, timezone=timezone)
    model = LabelModel(*size, palette)
    for title, face in TEMPLATES:
        layout, image = rendered(renderer, face, model)
        yield title, face, layout, image


@pytest.mark.parametrize(("locale", "timezone", "palette", "size"), CASES)
def test_every_template_on_every_panel_is_legible(
    locale: str, timezone: str, palette: LabelPalette, size: tuple[int, int]
) -> None:
    width, height = size
    for title, face, layout, image in every_template(locale, timezone, palette, size):
        what = f"{title} on {width}x{height}:{palette.value} in {locale}"
        # Nothing within EDGE_CLEARANCE px of the edge: the outer band is white (index 0).
        inner = (EDGE_CLEARANCE, EDGE_CLEARANCE, width - EDGE_CLEARANCE, height - EDGE_CLEARANCE)
        band = indices(image)
        band.paste(0, inner)
        assert band.getbbox() is None, f"{what}: ink within {EDGE_CLEARANCE} px of the edge"
        for item in layout.items:
            left, top, right, bottom = item.box
            assert min(left, top) >= EDGE_CLEARANCE, what
            assert right <= width - EDGE_CLEARANCE, what
            assert bottom <= height - EDGE_CLEARANCE, what
        check_no_text_overlaps(layout, what)
        texts = [item for item in layout.items if isinstance(item, PlacedText)]
        # No yellow text anywhere; every yellow pixel belongs to a plate.
        assert all(item.ink is not Ink.YELLOW for item in texts), what
        if Ink.YELLOW in panel_inks(palette):
            yellow = where(indices(image), {panel_inks(palette).index(Ink.YELLOW)})
            plates = [b for b in layout.items if isinstance(b, PlacedBox) and b.ink is Ink.YELLOW]
            for plate in plates:
                yellow.paste(0, plate.box)
            assert yellow.getbbox() is None, f"{what}: yellow outside a plate"
        if face.blank or face.price is None:
            assert layout.texts(Part.NOTICE), what
            continue
        [price] = layout.texts(Part.PRICE)
        if face.unit_price is not None:
            [unit] = layout.texts(Part.UNIT_PRICE)  # on a promotion too
            assert digits(face.unit_price) in digits(unit.text), what
        if face.promotion is None:
            assert price.ink is Ink.BLACK, what
            continue
        # The sale price: red where there is red, else on a plate (black on yellow, white on
        # black), never yellow on white.
        inks = panel_inks(palette)
        if Ink.RED in inks:
            assert price.ink is Ink.RED, what
        else:
            [plate] = layout.boxes(Part.PRICE_PLATE)
            expected = (Ink.YELLOW, Ink.BLACK) if Ink.YELLOW in inks else (Ink.BLACK, Ink.WHITE)
            assert (plate.ink, price.ink) == expected, what
            assert overlaps(plate.box, price.box), what
        if face.reference_price is not None:
            [was] = layout.texts(Part.WAS)
            [strike] = layout.boxes(Part.STRIKE)
            assert was.box[1] <= strike.box[1], what
            assert strike.box[3] <= was.box[3], what
            assert (strike.box[0], strike.box[2]) == (was.box[0], was.box[2]), what
            for unit in layout.texts(Part.UNIT_PRICE):
                assert was.size >= unit.size, f"{what}: 'was' smaller than the unit price"


@pytest.mark.parametrize("palette", list(LabelPalette))
def test_the_png_palette_is_the_panels_colours_only(palette: LabelPalette) -> None:
    renderer = LabelRenderer()
    for size in PANEL_SIZES:
        for _, face in TEMPLATES:
            png = renderer.render(face, LabelModel(*size, palette)).png
            image = Image.open(io.BytesIO(png))
            colours = image.getpalette()
            assert colours is not None
            entries = {tuple(colours[i : i + 3]) for i in range(0, len(colours), 3)}
            assert entries == {ink.value for ink in panel_inks(palette)}
            assert len(colours) == 3 * len(panel_inks(palette))


# --- names ---------------------------------------------------------------------------------

WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyzäöüßABCDEFGHIJKLMNOPRSTUWÄÖÜ", min_size=1,
               max_size=12)  # fmt: skip
QUANTITY = st.sampled_from(["250 g", "1,5 l", "6 x 0,33 l", "500ml", "10 Stück", "3,8 %"])


@st.composite
def product_names(draw: st.DrawFn) -> tuple[str, str | None]:
    words = draw(st.lists(WORD, min_size=1, max_size=14))
    quantity = draw(st.none() | QUANTITY)
    if quantity is not None:
        words.insert(draw(st.integers(0, len(words))), quantity)
    return " ".join(words), quantity


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    named=product_names(),
    size=st.sampled_from(PANEL_SIZES),
    palette=st.sampled_from(list(LabelPalette)),
    promotion=st.booleans(),
)
def test_names_break_at_word_boundaries_and_keep_their_quantity(
    named: tuple[str, str | None], size: tuple[int, int], palette: LabelPalette, promotion: bool
) -> None:
    name, quantity = named
    face = LabelFace(
        "4006381333931",
        name,
        "1.99",
        unit_price="7.96",
        unit="kg",
        reference_price="2.49" if promotion else None,
        promotion="p" if promotion else None,
        promotion_until=datetime(2025, 12, 5, 13, 36, tzinfo=UTC) if promotion else None,
    )
    layout, _ = rendered(LabelRenderer(locale="de_DE"), face, LabelModel(*size, palette))
    check_no_text_overlaps(layout, name)
    [price] = layout.texts(Part.PRICE)
    assert price.size >= 2 * layout.texts(Part.UNIT_PRICE)[0].size  # the price stays big
    lines = [item.text for item in layout.texts(Part.NAME)]
    assert 1 <= len(lines) <= (3 if size[1] >= size[0] else 2)
    shown = " ".join(lines)
    tokens = name_tokens(name)
    if "…" not in shown:
        assert shown == " ".join(tokens)  # whole, broken only between words
        return
    head, _, tail = shown.partition(" …")
    whole = " ".join(tokens)
    assert head, "at least the first word"
    assert whole.startswith(head)  # whole words from the start: cut where a space was
    assert whole[len(head) : len(head) + 1] in {"", " "}
    if quantity is not None:
        assert quantity in name_tokens(name)
        assert quantity in head or tail.strip() == quantity  # kept whole, after the ellipsis
    else:
        assert tail == ""


@pytest.mark.parametrize("size", PANEL_SIZES)
@pytest.mark.parametrize(
    "name",
    [
        "Feinschmecker Bergkäse extra würzig aus der Felsenhöhle am Stück gereift 250 g",
        "Bio Bergkäse Heumilch würzig 250 g",  # was "Bio Bergkäse / Heumilch würzig 25…"
        "Bergkäse extra am 250 g",  # was "Bergkäse / extra am 2…" on 152x152
    ],
)
def test_a_quantity_at_the_end_of_a_long_name_is_never_cut(
    size: tuple[int, int], name: str
) -> None:
    face = LabelFace("4006381333931", name, "4.99", unit_price="19.96", unit="kg")
    layout, _ = rendered(LabelRenderer(), face, LabelModel(*size, LabelPalette.BWR))
    shown = " ".join(item.text for item in layout.texts(Part.NAME))
    assert shown.endswith(" 250 g")
    assert "2…" not in shown
    assert "25…" not in shown


def test_name_tokens_keep_quantities_whole() -> None:
    assert name_tokens("Butter 250 g") == ("Butter", "250 g")
    assert name_tokens("Cola 6 x 0,33 l Dose") == ("Cola", "6 x 0,33 l", "Dose")
    assert name_tokens("Joghurt 3,8 % Fett 2x125g") == ("Joghurt", "3,8 %", "Fett", "2x125g")
    assert name_tokens("  Milch   1,5 l ") == ("Milch", "1,5 l")
    assert name_tokens("") == ()
    assert name_tokens("x 6 x 0,33 l") == ("x", "6 x 0,33 l")  # a lone x is a word


def test_a_word_too_wide_even_at_the_smallest_size_is_shortened_inside_the_panel() -> None:
    face = LabelFace("1", "Donaudampfschifffahrtsgesellschaftskapitänsmützenhalterung", "1.00")
    layout, _ = rendered(LabelRenderer(), face, LabelModel(152, 152, LabelPalette.BW))
    [line] = (item.text for item in layout.texts(Part.NAME))
    assert line.endswith("…")
    assert line.startswith("Donaudampf")


def test_the_committed_contact_sheets_are_the_templates_as_drawn_now() -> None:
    """docs/labels/ holds one sheet per locale and palette of SHEETS, as the renderer draws them
    today (after a template change: `make label-sheets`)."""
    docs = Path(__file__).resolve().parents[2] / "docs" / "labels"
    expected = {f"{locale}-{p.value}.png" for locale, _, palettes in SHEETS for p in palettes}
    assert {path.name for path in docs.glob("*.png")} == expected
    locale, timezone, palettes = SHEETS[0]
    committed = Image.open(docs / f"{locale}-{palettes[1].value}.png")
    drawn = render_sheet(locale, timezone, palettes[1])
    assert committed.size == drawn.size
    assert committed.convert("RGB").tobytes() == drawn.convert("RGB").tobytes(), (
        "docs/labels is out of date: run `make label-sheets` and commit it"
    )
