"""Glyphs for the label renderer: fonts, text measurements and rasterised texts, cached.

Measurements use the font mode the text is drawn with ("1": monochrome hinting), exactly as
``ImageDraw`` places it. A store's labels repeat prices, promotion ends and units, and wrapping
measures the same words more than once, so every measurement is cached, and so is each
rasterised text (bounded by bytes). Shared by the render thread and ``label preview``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from functools import cache, lru_cache
from typing import TYPE_CHECKING

from PIL import ImageFont

from gateway.labels.layout import Box

if TYPE_CHECKING:
    from PIL._imaging import ImagingCore

__all__ = ["advance", "ink_box", "mask", "metrics"]


@cache
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


# Measurements use the font mode the text is drawn with ("1": monochrome hinting), exactly as
# ImageDraw places it. They are cached: a store's labels repeat prices, promotion ends and
# units, and wrapping measures the same words more than once.
@lru_cache(maxsize=4096)
def ink_box(path: str, size: int, text: str) -> Box:
    """The ink box of ``text`` relative to its origin (anchor ``ls``)."""
    left, top, right, bottom = _font(path, size).getbbox(text, mode="1", anchor="ls")
    return (int(left), int(top), int(right), int(bottom))


@lru_cache(maxsize=16384)
def advance(path: str, size: int, text: str) -> float:
    """How far ``text`` advances the pen."""
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


#: The rasterised ``text`` (a 1-bit mask) and its ink box, as ``ImageDraw.text`` draws it.
mask = _MaskCache(_MASK_CACHE_BYTES).get


@cache
def metrics(path: str, size: int) -> tuple[int, int]:
    """Ascent and descent of the font at ``size``."""
    ascent, descent = _font(path, size).getmetrics()
    return int(ascent), int(descent)
