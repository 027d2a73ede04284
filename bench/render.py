"""Label rendering on one core: the 296x128 BWR promo face against a bare Pillow draw.

storegw: `LabelRenderer.render` of the promotion face (name, struck-through "was" price, sale
price in red, validity) to PNG bytes and content hash, a distinct face every time (distinct
name and prices; the validity text is shared, as a promotion's is across its SKUs).
Baseline in the same run: what a straightforward implementation does per label with plain
Pillow — a new RGB image, the same texts drawn with the same DejaVu fonts at the sizes the
template ends up using and at the same places (fonts loaded once, layout fixed in advance: no
wrapping or fitting, no hash), anti-aliased as Pillow draws on RGB (monochrome text is slower),
`Image.quantize` to the white/black/red palette, PNG with Pillow's defaults. Both sides render
the same faces, interleaved in rounds; the process is pinned to one CPU.

Also the rendering backlog of a big store (50 000 SKUs, 60 000 bound labels): a real batch of
distinct promo faces with realistic names (some wrap to two lines, some are shortened) and unit
prices, timed, and 60 000 renders extrapolated from its rate.
Goal (issue 5): >= 50 % of the bare rate.

    python bench/render.py        # BENCH_ROUNDS=7 BENCH_BATCH=700 BENCH_BACKLOG=5000
"""

from __future__ import annotations

import io
import os
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from PIL import Image, ImageDraw, ImageFont

from gateway.drivers.contracts import LabelModel, LabelPalette
from gateway.labels.render import DEFAULT_BOLD_FONT, DEFAULT_FONT, LabelFace, LabelRenderer

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "7"))
BATCH = int(os.environ.get("BENCH_BATCH", "700"))
WARM_UP = 200
BACKLOG = int(os.environ.get("BENCH_BACKLOG", "5000"))
STORE_LABELS = 60_000
GOAL = 0.5

MODEL = LabelModel(296, 128, LabelPalette.BWR)
LOCALE, TIMEZONE = "de_DE", "Europe/Berlin"
PROMOTION_UNTIL = datetime(2025, 11, 23, 18, 0, tzinfo=UTC)
PROMOTION_TEXT = "bis 23.11., 19:00"  # PROMOTION_UNTIL in de_DE, Europe/Berlin
BRANDS = (
    "Almtal",
    "Bachhof",
    "Eichenwald",
    "Feldmark",
    "Heideland",
    "Kornblume",
    "Lindenhof",
    "Moorbach",
    "Sonnental",
    "Wiesengrund",
)
PRODUCTS = (
    "Butter",
    "Joghurt",
    "Quark",
    "Bergkäse",
    "Vollmilch",
    "Sahne",
    "Kefir",
    "Frischkäse",
    "Schmand",
    "Buttermilch",
)
DETAILS = (
    "",
    "mild",
    "aus Weidemilch",
    "laktosefrei, 1,5 % Fett",
    "nach Art des Hauses, im Glas",
    "extra cremig aus Heumilch, mit Sauerrahm verfeinert",
)

# The 296x128 layout the template arrives at for a one-line name and an "xx.xx €" sale price:
# margin 4, name bold 16 px, "was" price and footer regular 11 px, sale price bold 67 px.
NAME_SIZE, SMALL_SIZE, PRICE_SIZE = 16, 11, 67
WHITE, BLACK, RED = (255, 255, 255), (0, 0, 0), (255, 0, 0)


def faces(first: int, count: int, *, backlog: bool = False) -> list[LabelFace]:
    """Distinct promo faces numbered from ``first`` (names and prices differ between any two).

    The comparison set has one-line names (what the bare baseline draws); the backlog set mixes
    in longer names and unit prices, as a store's assortment has.
    """
    result = []
    for n in range(first, first + count):
        brand, product = BRANDS[n % 10], PRODUCTS[n // 10 % 10]
        grams = 100 + n // 100 % 900
        name = f"{brand} {product} {grams} g"
        detail = DETAILS[n % len(DETAILS)] if backlog else ""
        if detail:
            name = f"{brand} {product} {detail} {grams} g"
        cents = 100 + n % 40000 if backlog else 1000 + n % 9000  # backlog: 1.00 to 400.99
        price = f"{cents // 100}.{cents % 100:02d}"
        was = f"{cents // 100 + 1 + n % 3}.{(cents + 50) % 100:02d}"
        result.append(
            LabelFace(
                sku=f"4006381{n:06d}",
                name=name,
                price=price,
                currency="EUR",
                unit_price=f"{cents * 4 // 100}.{cents * 4 % 100:02d}" if backlog else None,
                unit="kg" if backlog else None,
                reference_price=was,
                promotion=f"promo-{n % 7}",
                promotion_until=PROMOTION_UNTIL,
            )
        )
    return result


class BarePillow:
    """The baseline: plain Pillow, fonts loaded once, fixed layout, RGB → quantize → PNG."""

    def __init__(self) -> None:
        self.name_font = ImageFont.truetype(str(DEFAULT_BOLD_FONT), NAME_SIZE)
        self.small_font = ImageFont.truetype(str(DEFAULT_FONT), SMALL_SIZE)
        self.price_font = ImageFont.truetype(str(DEFAULT_BOLD_FONT), PRICE_SIZE)
        self.palette = Image.new("P", (1, 1))
        self.palette.putpalette([*WHITE, *BLACK, *RED])

    def render(self, face: LabelFace) -> bytes:
        assert face.name is not None
        assert face.reference_price is not None
        width, height = MODEL.width, MODEL.height
        image = Image.new("RGB", (width, height), WHITE)
        draw = ImageDraw.Draw(image)
        draw.text((4, 4), face.name, font=self.name_font, fill=BLACK)
        was = f"statt {face.reference_price.replace('.', ',')} €"
        was_width = int(draw.textlength(was, font=self.small_font))
        x = width - 4 - was_width
        draw.text((x, 22), was, font=self.small_font, fill=BLACK)
        draw.line((x - 1, 28, x + was_width + 1, 28), fill=BLACK, width=2)
        draw.text((4, 37), f"{face.price.replace('.', ',')} €", font=self.price_font, fill=RED)
        draw.text((4, height - 15), PROMOTION_TEXT, font=self.small_font, fill=BLACK)
        quantized = image.quantize(palette=self.palette, dither=Image.Dither.NONE)
        buffer = io.BytesIO()
        quantized.save(buffer, format="PNG")
        return buffer.getvalue()


def rate(render: Callable[[LabelFace], object], batch: Sequence[LabelFace]) -> float:
    started = time.perf_counter()
    for face in batch:
        render(face)
    return len(batch) / (time.perf_counter() - started)


def pin_to_one_cpu() -> int:
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def main() -> None:
    cpu = pin_to_one_cpu()
    renderer = LabelRenderer(locale=LOCALE, timezone=TIMEZONE)
    bare = BarePillow()

    def storegw(face: LabelFace) -> object:
        return renderer.render(face, MODEL)

    warm = faces(0, WARM_UP)
    rate(storegw, warm)
    rate(bare.render, warm)
    bare_rates, storegw_rates = [], []
    for round_ in range(ROUNDS):
        batch = faces(WARM_UP + round_ * BATCH, BATCH)  # fresh faces: none is rendered twice
        bare_rates.append(rate(bare.render, batch))
        storegw_rates.append(rate(storegw, batch))
    bare_rate, storegw_rate = statistics.median(bare_rates), statistics.median(storegw_rates)
    ratio = storegw_rate / bare_rate

    backlog = faces(WARM_UP + ROUNDS * BATCH, BACKLOG, backlog=True)
    started = time.perf_counter()
    for face in backlog:
        renderer.render(face, MODEL)
    backlog_s = time.perf_counter() - started
    backlog_rate = BACKLOG / backlog_s

    print(
        f"one core (CPU {cpu}), 296x128 BWR promo face, {ROUNDS} rounds x {BATCH:,} distinct faces"
    )
    print(
        f"bare Pillow (RGB → quantize → PNG)  median {bare_rate:7,.0f} renders/s  "
        f"(min {min(bare_rates):,.0f}, max {max(bare_rates):,.0f})"
    )
    print(
        f"storegw LabelRenderer.render        median {storegw_rate:7,.0f} renders/s  "
        f"(min {min(storegw_rates):,.0f}, max {max(storegw_rates):,.0f})"
    )
    print(f"ratio to bare Pillow                {ratio:7.0%}")
    print(f"goal >= {GOAL:.0%} of the bare rate: {'met' if ratio >= GOAL else 'NOT met'}")
    print(
        f"backlog: {BACKLOG:,} distinct promo faces (mixed names, unit prices) rendered in "
        f"{backlog_s:.1f} s = {backlog_rate:,.0f} renders/s"
    )
    print(
        f"backlog of {STORE_LABELS:,} labels on one core ≈ {STORE_LABELS / backlog_rate:.0f} s "
        f"at that rate (≈ {STORE_LABELS / storegw_rate:.0f} s at the comparison faces' rate)"
    )


if __name__ == "__main__":
    main()
