"""Visits from zone changes: short gaps merge, short visits are dropped, confirmation waits
for the visit to have lasted."""

from __future__ import annotations

import pytest

from gateway.presence.visits import Visit, VisitBook, VisitEnded, VisitRules, VisitStarted
from gateway.presence.zone_tracker import ZoneChange


def enter(tag: str, zone: str, at: float) -> ZoneChange:
    return ZoneChange(tag, zone, entered=True, started=at, at=at)


def leave(tag: str, zone: str, started: float, at: float, sightings: int = 20) -> ZoneChange:
    return ZoneChange(tag, zone, entered=False, started=started, at=at, sightings=sightings)


def test_a_visit_is_confirmed_once_it_lasted_and_ends_after_the_merge_gap() -> None:
    book = VisitBook()
    assert book.apply(enter("t", "a", 0.0), 0.0) == []
    assert book.tick(5.0, {"t": ("a", 0.0, 5.0)}) == []
    assert book.tick(12.0, {"t": ("a", 0.0, 11.0)}) == [VisitStarted("t", "a", 0.0)]
    assert book.apply(leave("t", "a", 0.0, 60.0), 63.0) == []
    assert book.tick(80.0, {}) == []  # still within the 30 s merge gap
    assert book.tick(93.0, {}) == [VisitEnded(Visit("t", "a", 0.0, 60.0, 20))]
    assert len(book) == 0


def test_a_return_within_the_gap_continues_the_visit() -> None:
    book = VisitBook()
    book.apply(enter("t", "a", 0.0), 0.0)
    book.apply(leave("t", "a", 0.0, 20.0, sightings=10), 24.0)
    book.apply(enter("t", "a", 35.0), 37.0)
    book.apply(leave("t", "a", 35.0, 70.0, sightings=15), 74.0)
    news = book.tick(200.0, {})
    assert news == [VisitEnded(Visit("t", "a", 0.0, 70.0, 25))]


def test_a_return_after_the_gap_is_a_new_visit() -> None:
    book = VisitBook()
    book.apply(enter("t", "a", 0.0), 0.0)
    book.apply(leave("t", "a", 0.0, 20.0), 22.0)
    news = book.apply(enter("t", "a", 60.0), 60.0)
    assert news == [VisitEnded(Visit("t", "a", 0.0, 20.0, 20))]


def test_another_zone_ends_the_visit_at_once() -> None:
    book = VisitBook()
    book.apply(enter("t", "a", 0.0), 0.0)
    book.apply(leave("t", "a", 0.0, 20.0), 20.0)
    news = book.apply(enter("t", "b", 20.0), 20.0)
    assert news == [VisitEnded(Visit("t", "a", 0.0, 20.0, 20))]


@pytest.mark.parametrize(("dwell", "sightings"), [(5.0, 20), (30.0, 2)])
def test_short_or_thinly_sighted_visits_are_dropped(dwell: float, sightings: int) -> None:
    book = VisitBook()
    book.apply(enter("t", "a", 0.0), 0.0)
    book.apply(leave("t", "a", 0.0, dwell, sightings=sightings), dwell)
    assert book.tick(dwell + 31.0, {}) == []


def test_a_tag_walking_away_is_not_confirmed_by_the_clock() -> None:
    book = VisitBook()
    book.apply(enter("t", "a", 0.0), 0.0)
    assert book.tick(30.0, {"t": ("a", 0.0, 6.0)}) == []  # last inside at 6 s


def test_close_reports_visits_that_already_ended() -> None:
    book = VisitBook()
    book.apply(enter("t", "a", 0.0), 0.0)
    book.apply(leave("t", "a", 0.0, 40.0), 41.0)
    assert book.close() == [VisitEnded(Visit("t", "a", 0.0, 40.0, 20))]


@pytest.mark.parametrize(
    "bad", [{"merge_gap_s": -1.0}, {"min_visit_s": -1.0}, {"min_sightings": 0}]
)
def test_nonsense_rules_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        VisitRules(**bad)  # type: ignore[arg-type]
