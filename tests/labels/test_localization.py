"""Labels the local way: money, unit prices and dates by the store's locale (CLDR through
Babel) in its time zone, words from the label catalogue, and the locale carried from
``[store] locale`` through the pipeline to the pixels."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from babel import Locale
from PIL import Image, ImageDraw, ImageFont

from gateway.clock import FakeClock
from gateway.drivers.contracts import LabelModel, LabelPalette
from gateway.labels.faces import face_to_label
from gateway.labels.localization import DEFAULT_LOCALE, ShelfLocale, parse_locale
from gateway.labels.render import DEFAULT_BOLD_FONT, DEFAULT_FONT, LabelFace, LabelRenderer, Part
from gateway.labels.words import UNIT_WORDS, WORDS
from tests.labels.support import MODEL, CountingDriver, item, label_store, promo

END = datetime(2025, 12, 5, 13, 36, tzinfo=UTC)  # 14:36 in Berlin


@pytest.mark.parametrize(
    ("locale", "money", "unit_price", "until"),
    [
        ("de_DE", "1,49\xa0€", "2,98\xa0€/kg", "bis 05.12., 14:36"),
        ("en_GB", "€1.49", "€2.98/kg", "until 05/12, 14:36"),
        ("fr_FR", "1,49\xa0€", "2,98\xa0€/kg", "jusqu\u2019au 05/12 14:36"),
        ("es_ES", "1,49\xa0€", "2,98\xa0€/kg", "hasta 5/12, 14:36"),
        ("it_IT", "1,49\xa0€", "2,98\xa0€/kg", "fino al 05/12, 14:36"),
        ("nl_NL", "€\xa01,49", "€\xa02,98/kg", "tot 5-12, 14:36"),
        ("pl_PL", "1,49\xa0€", "2,98\xa0€/kg", "do 5.12, 14:36"),
    ],
)
def test_money_unit_prices_and_dates_follow_the_locale(
    locale: str, money: str, unit_price: str, until: str
) -> None:
    shelf = ShelfLocale(locale, "Europe/Berlin")
    assert shelf.money("1.49", "EUR") == money
    assert shelf.unit_price("2.98", "EUR", "kg") == unit_price
    assert shelf.until(END) == until


def test_prices_keep_every_decimal_hq_sent_and_the_currencys_own() -> None:
    shelf = ShelfLocale("de_DE", "Europe/Berlin")
    assert shelf.money("1.499", "EUR") == "1,499\xa0€"  # never rounded
    assert shelf.money("1.5", "EUR") == "1,50\xa0€"
    assert shelf.money("1234.5", "EUR") == "1.234,50\xa0€"
    assert shelf.money("150", "JPY") == "150\xa0¥"
    assert ShelfLocale("pl_PL").money("12.99", "PLN") == "12,99\xa0zł"
    assert ShelfLocale("en_GB").money("1.99", "GBP") == "£1.99"
    assert ShelfLocale("de_DE").unit_price("0.12", "EUR", "piece") == "0,12\xa0€/Stück"
    assert ShelfLocale("de_DE").unit_price("0.12", "EUR", "100 g") == "0,12\xa0€/100 g"
    with pytest.raises(ValueError, match="not a decimal"):
        shelf.money("1,99", "EUR")


def test_dates_are_in_the_stores_time_zone() -> None:
    assert ShelfLocale("de_DE", "Europe/Berlin").until(END) == "bis 05.12., 14:36"
    assert ShelfLocale("de_DE", "UTC").until(END) == "bis 05.12., 13:36"
    assert ShelfLocale("en_GB", "Europe/London").until(END) == "until 05/12, 13:36"
    summer = datetime(2025, 7, 1, 22, 30, tzinfo=UTC)  # CEST: already 2 July in Berlin
    assert ShelfLocale("de_DE", "Europe/Berlin").until(summer) == "bis 02.07., 00:30"
    with pytest.raises(ValueError, match="UTC offset"):
        ShelfLocale("de_DE").until(datetime(2025, 12, 5, 13, 36))  # noqa: DTZ001 - the point


def test_the_catalogue_has_every_word_in_at_least_seven_languages() -> None:
    assert {"en", "de", "fr", "es", "it", "nl", "pl"} <= set(WORDS)
    for language, words in WORDS.items():
        assert Locale.parse(language).language == language
        assert set(words.units) == set(UNIT_WORDS), language
        assert "{when}" in words.until, language
        for text in (words.promotion, words.was, words.not_in_use, words.price_unavailable):
            assert text.strip(), language


@pytest.mark.parametrize("language", sorted(WORDS))
def test_the_label_fonts_draw_every_character_the_locale_writes(language: str) -> None:
    """No "tofu": each character of the words, money, unit prices and dates has a glyph."""
    locale = parse_locale(language)
    shelf = ShelfLocale(locale, "Europe/Berlin")
    words = WORDS[language]
    texts = [
        words.promotion,
        words.until.format(when=""),
        words.was,
        words.not_in_use,
        words.price_unavailable,
        *words.units.values(),
        shelf.money("1234.56", "EUR"),
        shelf.money("12.99", "PLN"),
        shelf.money("12.99", "GBP"),
        shelf.unit_price("2.98", "EUR", "kg"),
        shelf.until(END),
    ]
    characters = {c for text in texts for c in text if not c.isspace()}
    for path in (DEFAULT_FONT, DEFAULT_BOLD_FONT):
        font = ImageFont.truetype(str(path), 24)

        def bitmap(text: str, font: ImageFont.FreeTypeFont = font) -> bytes:
            image = Image.new("1", (40, 40), 0)
            ImageDraw.Draw(image).text((5, 5), text, font=font, fill=1)
            return image.tobytes()

        missing = bitmap("\u0378")  # unassigned: the font's "no glyph" box
        for character in sorted(characters):
            assert bitmap(character) != missing, f"{character!r} ({language}) has no glyph"


def test_locales_are_validated_and_named_canonically() -> None:
    assert parse_locale("de_DE") == "de_DE"
    assert parse_locale("de-DE") == "de_DE"
    assert parse_locale("fr") == "fr"
    for bad in ("xx_YY", "de_XX", "", "C", "de_DE.UTF-8", "german", "de_DE; rm -rf"):
        with pytest.raises(ValueError, match="locale"):
            parse_locale(bad)
    with pytest.raises(ValueError, match=r"no label words for language 'pt'.*de, en, es"):
        parse_locale("pt_PT")  # CLDR knows it; the catalogue does not (yet)
    assert parse_locale(DEFAULT_LOCALE) == DEFAULT_LOCALE


def test_the_label_words_are_in_the_stores_language() -> None:
    model = MODEL
    german = LabelRenderer(locale="de_DE", timezone="Europe/Berlin")
    promotion = LabelFace(
        "1", "Butter 250 g", "0.99", unit_price="3.96", unit="kg", reference_price="1.99",
        promotion="p", promotion_until=END,
    )  # fmt: skip
    layout = german.layout(promotion, model)
    assert [t.text for t in layout.texts(Part.PRICE)] == ["0,99\xa0€"]
    assert [t.text for t in layout.texts(Part.WAS_WORD)] == ["statt"]
    assert [t.text for t in layout.texts(Part.WAS)] == ["1,99\xa0€"]
    assert [t.text for t in layout.texts(Part.UNIT_PRICE)] == ["3,96\xa0€/kg"]
    assert [t.text for t in layout.texts(Part.VALIDITY)] == ["bis 05.12., 14:36"]
    no_end = LabelFace("1", "Butter", "0.99", promotion="p")
    assert [t.text for t in german.layout(no_end, model).texts(Part.VALIDITY)] == ["Aktion"]
    unpriced = german.layout(LabelFace("1", "Butter", None), model)
    assert [t.text for t in unpriced.texts(Part.NOTICE)] == ["Preis nicht verfügbar"]
    blank = german.layout(LabelFace.not_in_use(), model)
    assert [t.text for t in blank.texts(Part.NOTICE)] == ["nicht belegt"]
    polish = LabelRenderer(locale="pl_PL", timezone="Europe/Warsaw").layout(promotion, model)
    assert [t.text for t in polish.texts(Part.VALIDITY)] == ["do 5.12, 14:36"]


async def test_the_pipeline_draws_a_promotion_in_the_stores_locale_and_time_zone(
    tmp_path: Path,
) -> None:
    """A de_DE store in Berlin: the label shows "bis 05.12., 14:36", German money and the
    promotional unit price — the pixels of the renderer in that locale, not of en_GB/UTC."""
    clock = FakeClock(wall=datetime(2025, 12, 5, 9, 0, tzinfo=UTC))
    async with label_store(
        tmp_path, clock=clock, locale="de_DE", timezone="Europe/Berlin"
    ) as store:
        await store.bindings.bind("L1", "a", "hq")
        await store.prices(
            [item("a", "1.99", unit_price="7.96", unit="kg", name="Butter 250 g")],
            kind="full",
            promotions=[promo("p", "a", "0.99", clock.utc_now(), END, reference_price="1.99")],
        )
        await store.settle()
        job = await store.job("L1")
        face = face_to_label(str(job["face"]))
        assert face == LabelFace(
            "a", "Butter 250 g", "0.99", "EUR", unit_price="3.96", unit="kg",
            reference_price="1.99", promotion="p", promotion_until=END,
        )  # fmt: skip
        row = await store.db.fetchone(
            "SELECT png FROM label_images WHERE content_hash = ?", (job["content_hash"],)
        )
        assert row is not None
        german = LabelRenderer(locale="de_DE", timezone="Europe/Berlin")
        assert bytes(row["png"]) == german.render(face, MODEL).png
        english = LabelRenderer(timezone="UTC")
        assert bytes(row["png"]) != english.render(face, MODEL).png
        assert json.loads(str(job["face"]))["unit_price"] == "3.96"  # in the face itself
    assert MODEL.palette is LabelPalette.BWR


async def test_a_new_locale_draws_every_label_again_once(tmp_path: Path) -> None:
    clock = FakeClock()
    driver = CountingDriver(clock=clock)
    async with label_store(tmp_path, clock=clock, drivers={"esl": driver}, locale="en_GB") as s:
        await s.bindings.bind("L1", "S1", "hq")
        await s.prices([item("S1", "1.49")], kind="full")
        await s.settle()
        assert await s.pipeline.dispatch_once() == 1
        await s.confirm_all(driver)
        english = (await s.job("L1"))["content_hash"]
        assert (await s.job("L1"))["state"] == "confirmed"
    # The same store, restarted with the same style: nothing is drawn again.
    async with label_store(tmp_path, clock=clock, drivers={"esl": driver}, locale="en_GB") as s:
        await s.settle()
        assert (await s.job("L1"))["state"] == "confirmed"
        assert await s.pipeline.dispatch_once() == 0
    # [store] locale changed to de_DE: the confirmed label is drawn again and sent once.
    async with label_store(tmp_path, clock=clock, drivers={"esl": driver}, locale="de_DE") as s:
        await s.settle()
        job = await s.job("L1")
        assert job["state"] == "queued"
        assert job["content_hash"] not in (None, english)
        assert "label style changed" in job["last_error"]
        assert await s.pipeline.dispatch_once() == 1
        assert driver.pushes[-1].content_hash == job["content_hash"]
        await s.confirm_all(driver)
        assert (await s.job("L1"))["state"] == "confirmed"
    async with label_store(tmp_path, clock=clock, drivers={"esl": driver}, locale="de_DE") as s:
        await s.settle()
        assert await s.pipeline.dispatch_once() == 0
    assert len(driver.pushes) == 2


@pytest.mark.slow
async def test_a_price_change_overtakes_the_labels_drawn_again_for_a_new_locale(
    tmp_path: Path,
) -> None:
    """Drawing every label again in a new style (locale, template, fonts) is hours of radio
    time on a big store, and each label shows its right price meanwhile: a price change made
    after the restart goes to its label first, not after all of them."""
    clock = FakeClock()
    driver = CountingDriver(clock=clock, rate=60.0)  # one label a second: five per pass
    labels = [f"L{n:02d}" for n in range(20)]
    async with label_store(tmp_path, clock=clock, drivers={"esl": driver}, locale="en_GB") as s:
        for label in labels:
            await s.bindings.bind(label, f"S{label}", "hq")
        await s.prices([item(f"S{label}", "1.49") for label in labels], kind="full")
        await s.settle()
        while await s.pipeline.dispatch_once():
            await s.confirm_all(driver)
        assert {j["state"] for j in (await s.jobs()).values()} == {"confirmed"}
    clock.advance(3600)
    async with label_store(tmp_path, clock=clock, drivers={"esl": driver}, locale="de_DE") as s:
        await s.settle()  # every label drawn again in German, waiting for the radio
        clock.advance(60)
        await s.prices([item("SL19", "2.49")])  # the price of L19 goes up
        await s.settle()
        pushed = len(driver.pushes)
        assert await s.pipeline.dispatch_once() == 5
        first = [content.label_id for content in driver.pushes[pushed:]]
        assert "L19" in first
        assert [c.content_hash for c in driver.pushes if c.label_id == "L19"][-1] == (
            await s.job("L19")
        )["content_hash"]
        await s.confirm_all(driver)
        # A label whose panel is swapped meanwhile is blank: its content goes first too.
        wide = LabelModel(400, 300, LabelPalette.BWR)
        driver.panels["L18"] = wide
        s.check_in("L18", wide)
        await s.settle()
        pushed = len(driver.pushes)
        assert await s.pipeline.dispatch_once() > 0
        assert driver.pushes[pushed].label_id == "L18"
        assert (driver.pushes[pushed].model.width, driver.pushes[pushed].model.height) == (400, 300)


def test_the_style_covers_the_label_words_of_the_locales_language() -> None:
    german, swiss = LabelRenderer(locale="de_DE"), LabelRenderer(locale="de_CH")
    assert german.style != swiss.style  # another locale (money is written otherwise)
    assert german.style == LabelRenderer(locale="de_DE").style
    styles = {LabelRenderer(locale=locale).style.split(":")[3] for locale in ("de_DE", "fr_FR")}
    assert len(styles) == 2  # the words' part differs with the language
