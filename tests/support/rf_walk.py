"""Scripted walks through a store with ground truth, heard by receivers through a radio model.

The presence accuracy harness (``bench/presence_accuracy.py`` and tests/presence) runs these
walks through the real presence logic. The radio model is the usual indoor one: log-distance
path loss (exponent 2-3 per walk), log-normal shadowing that drifts slowly (sigma 4-6 dB, about
5 s correlation), fast fading (Rayleigh amplitude, in dB), adverts missed at random (20-40 %),
advertising intervals of 100 ms-1 s with the 0-10 ms jitter BLE adds, and a receiver
sensitivity floor. Everything is drawn from one seeded generator: a seed is a scenario.

Layout: two zones 3 m apart, one receiver each (``rx-a`` at x = 0, ``rx-b`` at x = 3). A
*shopper* tag walks in, stops before zone A, then zone B (or only one), then leaves; each stop
is a true visit. A *pass-by* tag walks the aisle past both zones at walking pace and never
stops: it must produce no visit.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field

from gateway.presence.visits import Visit, VisitBook, VisitEnded, VisitRules
from gateway.presence.zone_tracker import PresenceSettings, ZoneSpec, ZoneTracker

__all__ = [
    "RECEIVERS",
    "Accuracy",
    "Scenario",
    "Sighting",
    "TrueVisit",
    "Walk",
    "detect",
    "scenario",
    "score",
    "sightings",
]

RECEIVERS = {"rx-a": (0.0, 0.0), "rx-b": (3.0, 0.0)}
ZONE_OF_RECEIVER = {"rx-a": "zone-a", "rx-b": "zone-b"}
_SPOTS = {"zone-a": (0.0, 0.7), "zone-b": (3.0, 0.7)}  # where a shopper stands in each zone
_POWER_1M = -59.0
_SENSITIVITY = -100.0
_SHADOW_TAU_S = 5.0


@dataclass(frozen=True, slots=True)
class Sighting:
    tag: str
    receiver: str
    rssi: int
    at: float


@dataclass(frozen=True, slots=True)
class TrueVisit:
    tag: str
    zone: str
    started: float
    ended: float

    @property
    def dwell_s(self) -> float:
        return self.ended - self.started


@dataclass(slots=True)
class Walk:
    """A tag's path: (instant, x, y) waypoints, linear between them."""

    tag: str
    waypoints: list[tuple[float, float, float]]
    interval_s: float
    miss_rate: float
    exponent: float
    shadow_sigma: float
    visits: list[TrueVisit] = field(default_factory=list)

    def position(self, at: float) -> tuple[float, float]:
        points = self.waypoints
        if at <= points[0][0]:
            return points[0][1], points[0][2]
        for (t0, x0, y0), (t1, x1, y1) in itertools.pairwise(points):
            if at <= t1:
                share = (at - t0) / (t1 - t0) if t1 > t0 else 1.0
                return x0 + share * (x1 - x0), y0 + share * (y1 - y0)
        return points[-1][1], points[-1][2]

    @property
    def ends(self) -> float:
        return self.waypoints[-1][0]


@dataclass(slots=True)
class Scenario:
    walks: list[Walk]

    @property
    def visits(self) -> list[TrueVisit]:
        return [visit for walk in self.walks for visit in walk.visits]

    @property
    def ends(self) -> float:
        return max(walk.ends for walk in self.walks)


def _shopper(rng: random.Random, tag: str, start: float, zones: list[str], dwell_s: float) -> Walk:
    speed = rng.uniform(0.8, 1.3)
    x, y, t = -12.0, 4.0, start
    points = [(t, x, y)]
    visits: list[TrueVisit] = []
    for zone in zones:
        sx, sy = _SPOTS[zone]
        t += math.dist((x, y), (sx, sy)) / speed
        points.append((t, sx, sy))
        visits.append(TrueVisit(tag, zone, t, t + dwell_s))
        t += dwell_s
        points.append((t, sx, sy))
        x, y = sx, sy
    t += math.dist((x, y), (15.0, 4.0)) / speed
    points.append((t, 15.0, 4.0))
    return Walk(tag, points, **_radio(rng), visits=visits)


def _passer_by(rng: random.Random, tag: str, start: float) -> Walk:
    speed = rng.uniform(0.9, 1.4)
    lane = rng.uniform(1.2, 2.0)  # the aisle in front of the shelves
    x0, x1 = -12.0, 15.0
    points = [(start, x0, lane), (start + (x1 - x0) / speed, x1, lane)]
    return Walk(tag, points, **_radio(rng))


def _radio(rng: random.Random) -> dict[str, float]:
    return {
        "interval_s": rng.uniform(0.1, 1.0),
        "miss_rate": rng.uniform(0.2, 0.4),
        "exponent": rng.uniform(2.0, 3.0),
        "shadow_sigma": rng.uniform(4.0, 6.0),
    }


def scenario(
    seed: int, *, shoppers: int = 6, passers_by: int = 4, dwell_s: float = 60.0
) -> Scenario:
    """A seeded scenario: shoppers visiting one or both zones for ``dwell_s``, and pass-bys."""
    rng = random.Random(seed)
    walks: list[Walk] = []
    for index in range(shoppers):
        route = rng.choice([["zone-a"], ["zone-b"], ["zone-a", "zone-b"], ["zone-b", "zone-a"]])
        walks.append(_shopper(rng, f"shopper-{index}", rng.uniform(0, 120), route, dwell_s))
    walks.extend(
        _passer_by(rng, f"passer-{index}", rng.uniform(0, 200)) for index in range(passers_by)
    )
    return Scenario(walks)


def sightings(scene: Scenario, seed: int) -> Iterator[Sighting]:
    """Every advert any receiver heard, in time order."""
    rng = random.Random(seed ^ 0x5EED)
    streams = [_walk_sightings(walk, random.Random(rng.getrandbits(64))) for walk in scene.walks]
    pending: list[tuple[float, int, Sighting]] = []
    for index, stream in enumerate(streams):
        first = next(stream, None)
        if first is not None:
            heapq.heappush(pending, (first.at, index, first))
    while pending:
        _, index, sighting = heapq.heappop(pending)
        yield sighting
        following = next(streams[index], None)
        if following is not None:
            heapq.heappush(pending, (following.at, index, following))


def _walk_sightings(walk: Walk, rng: random.Random) -> Iterator[Sighting]:
    shadows = dict.fromkeys(RECEIVERS, 0.0)
    t = walk.waypoints[0][0] + rng.uniform(0, walk.interval_s)
    last = t
    while t <= walk.ends:
        # Shadowing drifts as a first-order process with the configured spread.
        keep = math.exp(-(t - last) / _SHADOW_TAU_S)
        for receiver in shadows:
            shadows[receiver] = keep * shadows[receiver] + math.sqrt(1 - keep * keep) * rng.gauss(
                0.0, walk.shadow_sigma
            )
        last = t
        x, y = walk.position(t)
        for receiver, (rx, ry) in RECEIVERS.items():
            if rng.random() < walk.miss_rate:
                continue
            distance = max(0.3, math.hypot(x - rx, y - ry))
            amplitude = max(1e-3, math.sqrt(-math.log(max(rng.random(), 1e-12))))  # Rayleigh
            fading = 20 * math.log10(amplitude)
            rssi = (
                _POWER_1M - 10 * walk.exponent * math.log10(distance) + shadows[receiver] + fading
            )
            if rssi >= _SENSITIVITY:
                yield Sighting(walk.tag, receiver, round(min(rssi, 0.0)), t)
        t += walk.interval_s + rng.uniform(0.0, 0.01)


ENTER_RSSI = -64.0  # the zones' threshold in these walks (calibrated as a store would)


def detect(
    scene: Scenario,
    seed: int,
    settings: PresenceSettings | None = None,
    rules: VisitRules | None = None,
) -> list[Visit]:
    """The visits the presence logic finds in a scenario, ticked once a second."""
    zones = [ZoneSpec(zone, (receiver,), ENTER_RSSI) for receiver, zone in ZONE_OF_RECEIVER.items()]
    tracker, book = ZoneTracker(zones, settings), VisitBook(rules)
    found: list[Visit] = []

    def keep(news: list[object]) -> None:
        found.extend(item.visit for item in news if isinstance(item, VisitEnded))

    next_tick = 0.0
    for sighting in sightings(scene, seed):
        while next_tick <= sighting.at:
            for change in tracker.tick(next_tick):
                keep(list(book.apply(change, next_tick)))
            keep(list(book.tick(next_tick, tracker.present())))
            next_tick += 1.0
        for change in tracker.sight(sighting.tag, sighting.receiver, sighting.rssi, sighting.at):
            keep(list(book.apply(change, sighting.at)))
    end = scene.ends + 120.0
    while next_tick <= end:
        for change in tracker.tick(next_tick):
            keep(list(book.apply(change, next_tick)))
        keep(list(book.tick(next_tick, tracker.present())))
        next_tick += 1.0
    return found


@dataclass(frozen=True, slots=True)
class Accuracy:
    dwell_errors: list[float]  # |found - true| per true visit found, seconds
    missed: int  # true visits with no visit found in their zone
    phantoms: int  # visits found for tags that never stopped
    right_zone_share: float  # of the true visit time, the part inside a found visit of its zone
    wrong_zone_share: float  # of the true visit time, the part inside a found visit elsewhere

    @property
    def median_error(self) -> float:
        return statistics.median(self.dwell_errors) if self.dwell_errors else math.inf

    @property
    def p90_error(self) -> float:
        if len(self.dwell_errors) < 2:
            return self.median_error
        return statistics.quantiles(self.dwell_errors, n=10, method="inclusive")[-1]


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def score(scene: Scenario, found: list[Visit]) -> Accuracy:
    """How the found visits compare with the truth."""
    by_tag: dict[str, list[Visit]] = {}
    for visit in found:
        by_tag.setdefault(visit.identity, []).append(visit)
    errors: list[float] = []
    missed = 0
    right = wrong = total = 0.0
    for truth in scene.visits:
        total += truth.dwell_s
        mine = by_tag.get(truth.tag, [])
        same_zone = [v for v in mine if v.zone == truth.zone]
        right += sum(_overlap(truth.started, truth.ended, v.started, v.ended) for v in same_zone)
        wrong += sum(
            _overlap(truth.started, truth.ended, v.started, v.ended)
            for v in mine
            if v.zone != truth.zone
        )
        matching = [
            v for v in same_zone if _overlap(truth.started, truth.ended, v.started, v.ended) > 0
        ]
        if not matching:
            missed += 1
            continue
        best = max(matching, key=lambda v: _overlap(truth.started, truth.ended, v.started, v.ended))
        errors.append(abs(best.dwell_s - truth.dwell_s))
    stoppers = {truth.tag for truth in scene.visits}
    phantoms = sum(1 for visit in found if visit.identity not in stoppers)
    return Accuracy(
        errors,
        missed,
        phantoms,
        right / total if total else 1.0,
        wrong / total if total else 0.0,
    )
