"""Contact sheets: every label template on every panel, for reviewers to see (``docs/labels/``).

    python -m gateway.labels.contact_sheet [OUT_DIR]     # default: docs/labels

One PNG per locale and palette: a row per template (:data:`TEMPLATES`), a column per panel size
(:data:`~gateway.labels.render.PANEL_SIZES`), each label at its native resolution on a grey
ground. ``tests/labels/test_legibility.py`` checks the same templates on the same panels.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from gateway.drivers.contracts import LabelModel, LabelPalette
from gateway.labels.render import (
    DEFAULT_BOLD_FONT,
    DEFAULT_FONT,
    PANEL_SIZES,
    LabelFace,
    LabelRenderer,
    panel_inks,
)

__all__ = ["SHEETS", "TEMPLATES", "render_sheet", "write_sheets"]

_UNTIL = datetime(2025, 12, 5, 13, 36, tzinfo=UTC)

#: One face per template: what each kind of label looks like at its most demanding.
TEMPLATES: tuple[tuple[str, LabelFace], ...] = (
    (
        "regular price, unit price",
        LabelFace("4006381333931", "Bio Vollmilch-Joghurt mild 3,8 % Fett 500 g", "1.49", "EUR",
                  unit_price="2.98", unit="kg"),
    ),
    (
        "long name, shortened (the quantity kept)",
        LabelFace("4006381333948",
                  "Feinschmecker Bergkäse extra würzig, 12 Monate in der Felsenhöhle gereift, "
                  "am Stück 250 g", "12.49", "EUR", unit_price="49.96", unit="kg"),
    ),
    (
        "promotion: was price, unit price, end",
        LabelFace("4006381333955", "Süßrahmbutter 250 g", "1.79", "EUR", unit_price="7.16",
                  unit="kg", reference_price="2.29", promotion="flash-7", promotion_until=_UNTIL),
    ),
    (
        "promotion: no was price, per piece",
        LabelFace("4006381333962", "Spülmaschinentabs Classic 40 Stück", "4.99", "EUR",
                  unit_price="0.12", unit="piece", promotion="week-49", promotion_until=_UNTIL),
    ),
    (
        "no price yet",
        LabelFace("4006381333979", "Apfelschorle 6 x 0,5 l", None),
    ),
    ("label not in use", LabelFace.not_in_use()),
)  # fmt: skip

#: (locale, time zone, palettes): the demo's locale on every palette, the others on one each.
SHEETS: tuple[tuple[str, str, tuple[LabelPalette, ...]], ...] = (
    ("de_DE", "Europe/Berlin", tuple(LabelPalette)),
    ("en_GB", "Europe/London", (LabelPalette.BWR,)),
    ("fr_FR", "Europe/Paris", (LabelPalette.BWY,)),
    ("es_ES", "Europe/Madrid", (LabelPalette.BW,)),
    ("it_IT", "Europe/Rome", (LabelPalette.BWRY,)),
    ("nl_NL", "Europe/Amsterdam", (LabelPalette.BWR,)),
    ("pl_PL", "Europe/Warsaw", (LabelPalette.BWY,)),
)

_GAP, _CAPTION = 24, 18
_GROUND, _FRAME, _TEXT = (200, 200, 200), (120, 120, 120), (40, 40, 40)


def render_sheet(
    locale: str,
    timezone: str,
    palette: LabelPalette,
    templates: Sequence[tuple[str, LabelFace]] = TEMPLATES,
    sizes: Sequence[tuple[int, int]] = PANEL_SIZES,
) -> Image.Image:
    """A palette image: ``templates`` (rows) on ``sizes`` (columns) in ``locale``."""
    renderer = LabelRenderer(locale=locale, timezone=timezone)
    column_width = [width for width, _ in sizes]
    row_height = max(height for _, height in sizes)
    width = _GAP + sum(w + _GAP for w in column_width)
    height = _CAPTION + _GAP + len(templates) * (2 * _CAPTION + row_height + _GAP)
    sheet = Image.new("RGB", (width, height), _GROUND)
    draw = ImageDraw.Draw(sheet)
    draw.fontmode = "1"
    caption_font = ImageFont.truetype(str(DEFAULT_FONT), 13)
    title_font = ImageFont.truetype(str(DEFAULT_BOLD_FONT), 14)
    draw.text(
        (_GAP, 4),
        f"storegw labels · {locale} · {timezone} · {palette.value} · rows: templates, "
        "columns: panels (native pixels)",
        font=caption_font,
        fill=_TEXT,
    )
    y = _CAPTION + _GAP
    for title, face in templates:
        draw.text((_GAP, y), title, font=title_font, fill=_TEXT)
        x = _GAP
        for panel_width, panel_height in sizes:
            model = LabelModel(panel_width, panel_height, palette)
            label = renderer.draw(face, model).convert("RGB")
            top = y + _CAPTION
            draw.rectangle((x - 1, top - 1, x + panel_width, top + panel_height), outline=_FRAME)
            sheet.paste(label, (x, top))
            draw.text(
                (x, top + panel_height + 3),
                f"{panel_width}x{panel_height}",
                font=caption_font,
                fill=_TEXT,
            )
            x += panel_width + _GAP
        y += 2 * _CAPTION + row_height + _GAP
    colours = [ink.value for ink in panel_inks(palette)] + [_GROUND, _FRAME, _TEXT]
    palette_image = Image.new("P", (1, 1))
    palette_image.putpalette([channel for rgb in colours for channel in rgb])
    return sheet.quantize(palette=palette_image, dither=Image.Dither.NONE)


def write_sheets(out_dir: Path) -> list[Path]:
    """Every sheet of :data:`SHEETS` into ``out_dir`` (``LOCALE-PALETTE.png``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for locale, timezone, palettes in SHEETS:
        for palette in palettes:
            path = out_dir / f"{locale}-{palette.value}.png"
            render_sheet(locale, timezone, palette).save(path, optimize=True)
            written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    out_dir = Path(args[0]) if args else Path("docs/labels")
    for path in write_sheets(out_dir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
