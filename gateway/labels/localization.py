"""How a store's labels write money, unit prices, dates and words: its locale (``[store] locale``).

Numbers, currencies and dates follow CLDR through Babel, never hand-written rules: ``de_DE``
writes ``1,49 €``, ``2,98 €/kg`` and ``bis 05.12., 14:36``; ``en_GB`` ``€1.49`` and
``until 05/12, 14:36``. Dates are shown in the store's time zone. The words come from the
label catalogue (:mod:`gateway.labels.words`), by the locale's language.

A price is shown with every decimal HQ sent (``1.499`` stays ``1,499 €``: never rounded) and at
least the currency's usual ones (``1.5`` is ``1,50 €``). Formatting is cached: a store's labels
repeat prices, units and promotion ends.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_skeleton, format_time
from babel.numbers import format_currency

from gateway.labels.words import LabelWords, words_for_language

__all__ = ["DEFAULT_LOCALE", "ShelfLocale", "parse_locale"]

#: English words, day-first dates, a 24-hour clock; a store sets its own (``[store] locale``).
DEFAULT_LOCALE = "en_GB"

_LOCALE_SHAPE = re.compile(r"^[A-Za-z]{2,3}(?:[_-][A-Za-z]{4})?(?:[_-](?:[A-Za-z]{2}|\d{3}))?$")


def parse_locale(text: str) -> str:
    """``de_DE`` (or ``de-DE``) → the canonical CLDR identifier, if Babel knows the locale and
    the label catalogue has its language; :class:`ValueError` says what is wrong."""
    if not _LOCALE_SHAPE.fullmatch(text):
        raise ValueError(f"locale {text!r}: expected a language and territory, e.g. de_DE")
    try:
        locale = Locale.parse(text.replace("-", "_"))
    except (UnknownLocaleError, ValueError) as exc:
        raise ValueError(f"unknown locale {text!r} (CLDR has no such locale)") from exc
    try:
        words_for_language(locale.language)
    except LookupError as exc:
        raise ValueError(f"locale {text!r}: {exc}") from None
    return str(locale)


class ShelfLocale:
    """Formats for one store: ``locale`` (a CLDR identifier) and ``timezone`` (IANA)."""

    __slots__ = ("_tz", "locale", "timezone", "words")

    def __init__(self, locale: str = DEFAULT_LOCALE, timezone: str = "UTC") -> None:
        self.locale = parse_locale(locale)
        self.timezone = timezone
        self._tz = ZoneInfo(timezone)
        self.words: LabelWords = words_for_language(Locale.parse(self.locale).language)

    def money(self, amount: str, currency: str) -> str:
        """``1.49`` EUR → ``1,49 €`` (de_DE), ``€1.49`` (en_GB)."""
        return _money(amount, currency, self.locale)

    def unit_price(self, amount: str, currency: str, unit: str) -> str:
        """``2.98`` EUR per ``kg`` → ``2,98 €/kg``; a unit word in the store's language."""
        return f"{_money(amount, currency, self.locale)}/{self.words.unit(unit)}"

    def until(self, instant: datetime) -> str:
        """A promotion's end, local date and time: ``bis 05.12., 14:36`` (de_DE)."""
        return self.words.until.format(when=_local_day_and_time(instant, self.locale, self._tz))


@lru_cache(maxsize=8192)
def _money(amount: str, currency: str, locale: str) -> str:
    try:
        number = Decimal(amount)
    except InvalidOperation:
        raise ValueError(f"money amount {amount!r} is not a decimal number") from None
    return format_currency(number, currency, locale=locale, decimal_quantization=False)


@lru_cache(maxsize=256)
def _local_day_and_time(instant: datetime, locale: str, tz: ZoneInfo) -> str:
    if instant.tzinfo is None:
        raise ValueError(f"a promotion's end must carry its UTC offset: {instant.isoformat()}")
    day = format_skeleton("MMdd", instant, tzinfo=tz, locale=locale)
    time = format_time(instant, "short", tzinfo=tz, locale=locale)
    pattern = Locale.parse(locale).datetime_formats["short"]
    return str(pattern).replace("{1}", day).replace("{0}", time)
