"""The shelf template: where a face's name, price, "was" price, unit price and validity go on a
panel of a given size — decided with the renderer's measurements, nothing drawn here.

From the bottom up: the footer (unit price, the promotion's end or the SKU), then the name from
the top (bold, wrapped at word boundaries, a size smaller before anything is cut, shortened
after a whole word keeping its quantity), then the biggest price that fits in between; a
promotion adds the struck-through "was" price and its sale price (red on panels with red, on a
plate otherwise). Nothing is placed within :data:`~gateway.labels.layout.EDGE_CLEARANCE` of
the edge.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Protocol

from gateway.drivers.contracts import LabelModel
from gateway.labels.faces import LabelFace
from gateway.labels.layout import (
    EDGE_CLEARANCE,
    Box,
    Ink,
    Part,
    PlacedBox,
    PlacedText,
    panel_inks,
)
from gateway.labels.localization import ShelfLocale

__all__ = ["Sheet", "Typesetter", "name_tokens"]


class Typesetter(Protocol):
    """What the template asks of the renderer: the store's locale and text measurements."""

    @property
    def locale(self) -> ShelfLocale: ...

    def text_at(
        self, part: Part, text: str, *, bold: bool, size: int, x: int, baseline: int, ink: Ink
    ) -> PlacedText: ...

    def measure(self, text: str, *, bold: bool, size: int) -> Box: ...

    def advance(self, text: str, *, bold: bool, size: int) -> float: ...

    def metrics(self, *, bold: bool, size: int) -> tuple[int, int]: ...


class Sheet:
    """One layout in the making: the panel's geometry and what is placed so far."""

    def __init__(self, renderer: Typesetter, model: LabelModel) -> None:
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
        inks = panel_inks(self.palette)
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


def _shorten(renderer: Typesetter, text: str, width: int, *, bold: bool, size: int) -> str:
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
