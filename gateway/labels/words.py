"""The words a shelf label shows, per language: the label's small message catalogue.

A typed table rather than gettext catalogues: a label has half a dozen words, and a table checked
by mypy cannot lose a word in one language (every :class:`LabelWords` must name all of them),
needs no compile step or ``.mo`` files in the package, and keeps no global translation state in
the render thread. To add a language, add one entry to ``WORDS`` (its ISO 639-1 code) with every
word and the unit words of ``UNIT_WORDS``; ``tests/labels/test_localization.py`` checks that the
entry is complete and that the label font has a glyph for every character.

Money, numbers and dates are not here: they come from CLDR through Babel
(:mod:`gateway.labels.localization`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["UNIT_WORDS", "WORDS", "LabelWords", "words_for_language"]

#: Units HQ may send as a word (``unit = "piece"``); shown in the store's language. Any other
#: unit (``kg``, ``l``, ``100 g``, ``m²``…) is a symbol and shown as sent.
UNIT_WORDS = ("piece", "pair", "pack", "roll", "sheet", "wash", "portion")


@dataclass(frozen=True, slots=True)
class LabelWords:
    promotion: str  # a promotion with no end to show
    until: str  # a promotion's end; {when} is the local date and time
    was: str  # before the struck-through reference price
    not_in_use: str  # the face of a label no SKU is bound to
    price_unavailable: str  # a SKU without a price
    units: Mapping[str, str]  # the words of UNIT_WORDS

    def unit(self, unit: str) -> str:
        """``unit`` as the label writes it: a unit word translated, a symbol as it is."""
        return self.units.get(unit.strip().lower(), unit)


def _units(*words: str) -> Mapping[str, str]:
    if len(words) != len(UNIT_WORDS):
        raise ValueError(f"{len(words)} unit words for the {len(UNIT_WORDS)} of UNIT_WORDS")
    return MappingProxyType(dict(zip(UNIT_WORDS, words, strict=True)))


WORDS: Mapping[str, LabelWords] = MappingProxyType(
    {
        "en": LabelWords(
            promotion="promotion",
            until="until {when}",
            was="was",
            not_in_use="not in use",
            price_unavailable="price unavailable",
            units=_units("piece", "pair", "pack", "roll", "sheet", "wash", "portion"),
        ),
        "de": LabelWords(
            promotion="Aktion",
            until="bis {when}",
            was="statt",
            not_in_use="nicht belegt",
            price_unavailable="Preis nicht verfügbar",
            units=_units("Stück", "Paar", "Packung", "Rolle", "Blatt", "WL", "Portion"),
        ),
        "fr": LabelWords(
            promotion="promotion",
            until="jusqu\u2019au {when}",
            was="au lieu de",
            not_in_use="non utilisée",
            price_unavailable="prix indisponible",
            units=_units("pièce", "paire", "paquet", "rouleau", "feuille", "lavage", "portion"),
        ),
        "es": LabelWords(
            promotion="oferta",
            until="hasta {when}",
            was="antes",
            not_in_use="sin asignar",
            price_unavailable="precio no disponible",
            units=_units("unidad", "par", "paquete", "rollo", "hoja", "lavado", "ración"),
        ),
        "it": LabelWords(
            promotion="offerta",
            until="fino al {when}",
            was="invece di",
            not_in_use="non in uso",
            price_unavailable="prezzo non disponibile",
            units=_units("pezzo", "paio", "confezione", "rotolo", "foglio", "lavaggio", "porzione"),
        ),
        "nl": LabelWords(
            promotion="aanbieding",
            until="tot {when}",
            was="van",
            not_in_use="niet in gebruik",
            price_unavailable="prijs niet beschikbaar",
            units=_units("stuk", "paar", "pak", "rol", "vel", "wasbeurt", "portie"),
        ),
        "pl": LabelWords(
            promotion="promocja",
            until="do {when}",
            was="było",
            not_in_use="nieużywana",
            price_unavailable="cena niedostępna",
            units=_units("szt.", "para", "opak.", "rolka", "arkusz", "pranie", "porcja"),
        ),
    }
)


def words_for_language(language: str) -> LabelWords:
    """The label words of ``language`` (ISO 639-1); :class:`LookupError` names those there are."""
    try:
        return WORDS[language]
    except KeyError:
        raise LookupError(
            f"no label words for language {language!r} (there are: {', '.join(sorted(WORDS))}; "
            "add it to gateway/labels/words.py)"
        ) from None
