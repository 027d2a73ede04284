"""From zone changes to visits worth reporting: sans-IO.

A tag that drops out for a few seconds (a shopper bending down, a missed advert burst) must not
count as two visits, and a shopper walking past must not count as one. :class:`VisitBook`
therefore holds every exit for ``merge_gap_s``: an entry into the same zone within that gap
continues the visit. A visit is *confirmed* (:class:`VisitStarted`) once it has lasted
``min_visit_s`` up to its latest sighting inside (the tracker's ``present()``, not the clock: a
tag walking away is not still visiting); it *ends* (:class:`VisitEnded`) when its merge gap
has passed with no return. A visit that never lasted ``min_visit_s`` or was sighted fewer
than ``min_sightings`` times is dropped without a word.

Instants are the caller's monotonic seconds, as in :mod:`.zone_tracker`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeAlias

from gateway.presence.zone_tracker import ZoneChange

__all__ = ["Visit", "VisitBook", "VisitEnded", "VisitNews", "VisitRules", "VisitStarted"]


@dataclass(frozen=True, slots=True)
class VisitRules:
    merge_gap_s: float = 30.0
    min_visit_s: float = 10.0
    min_sightings: int = 3

    def __post_init__(self) -> None:
        if self.merge_gap_s < 0 or self.min_visit_s < 0 or self.min_sightings < 1:
            raise ValueError("merge_gap_s, min_visit_s >= 0 and min_sightings >= 1")


@dataclass(frozen=True, slots=True)
class Visit:
    identity: str
    zone: str
    started: float
    ended: float
    sightings: int

    @property
    def dwell_s(self) -> float:
        return max(0.0, self.ended - self.started)


@dataclass(frozen=True, slots=True)
class VisitStarted:
    identity: str
    zone: str
    started: float


@dataclass(frozen=True, slots=True)
class VisitEnded:
    visit: Visit


VisitNews: TypeAlias = VisitStarted | VisitEnded


@dataclass(slots=True)
class _Open:
    zone: str
    started: float
    sightings: int = 0
    confirmed: bool = False
    ended: float | None = None  # set while held for the merge gap
    exit_seen: float = 0.0  # when the exit came (the merge gap counts from here)


class VisitBook:
    """Open and closing visits per identity (see the module docstring)."""

    def __init__(self, rules: VisitRules | None = None) -> None:
        self.rules = rules or VisitRules()
        self._open: dict[str, _Open] = {}

    def apply(self, change: ZoneChange, now: float) -> list[VisitNews]:
        """A change the tracker decided; returns what became news."""
        news: list[VisitNews] = []
        current = self._open.get(change.identity)
        if change.entered:
            if current is not None and current.ended is not None:
                if current.zone == change.zone and change.started - current.ended <= (
                    self.rules.merge_gap_s
                ):
                    current.ended = None  # back within the gap: the same visit goes on
                    return []
                news.extend(self._finish(change.identity, current))
            self._open[change.identity] = _Open(change.zone, change.started)
            return news
        if current is None or current.zone != change.zone or current.ended is not None:
            return news
        current.sightings += change.sightings
        current.ended = change.at
        current.exit_seen = now
        return news

    def tick(self, now: float, present: Mapping[str, tuple[str, float, float]]) -> list[VisitNews]:
        """Confirm visits that lasted long enough (``present``: the tracker's identity →
        (zone, visit start, last sighting inside)); end those whose merge gap passed."""
        news: list[VisitNews] = []
        done: list[str] = []
        for identity, visit in self._open.items():
            if visit.ended is None:
                seen = present.get(identity)
                if seen is not None and seen[0] == visit.zone:
                    news.extend(self._confirm(identity, visit, seen[2]))
            elif now - visit.exit_seen >= self.rules.merge_gap_s:
                news.extend(self._finish(identity, visit))
                done.append(identity)
        for identity in done:
            del self._open[identity]
        return news

    def close(self) -> list[VisitNews]:
        """End every visit now (the tracker was closed first): the service is stopping."""
        news: list[VisitNews] = []
        for identity, visit in self._open.items():
            if visit.ended is not None:
                news.extend(self._finish(identity, visit))
        self._open.clear()
        return news

    def __len__(self) -> int:
        return len(self._open)

    def _confirm(self, identity: str, visit: _Open, last_inside: float) -> list[VisitNews]:
        if visit.confirmed or last_inside - visit.started < self.rules.min_visit_s:
            return []
        visit.confirmed = True
        return [VisitStarted(identity, visit.zone, visit.started)]

    def _finish(self, identity: str, visit: _Open) -> list[VisitNews]:
        ended = visit.ended if visit.ended is not None else visit.started
        record = Visit(identity, visit.zone, visit.started, ended, visit.sightings)
        rules = self.rules
        if visit.confirmed or (
            record.dwell_s >= rules.min_visit_s and record.sightings >= rules.min_sightings
        ):
            return [VisitEnded(record)]
        return []
