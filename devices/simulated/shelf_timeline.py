"""Scripted weight timelines of one shelf slot, with ground truth: sans-IO, no clock, no driver.

The accuracy harness and the stock benchmark build a :class:`ShelfTimeline`, script what
happens (``pick``, ``put``, ``lean``, ``overload``, ``unplug``) and iterate :meth:`samples`:
``(t, raw_grams, device_stable, status)`` at ``rate_hz`` with Gaussian noise, linear creep
(``drift_grams_per_h``) and the hand's push and swing around every pick and put. Time is
synthetic seconds from 0, so a simulated day takes as long as the consumer needs, not a day.
:attr:`truth` lists what really happened to the item count.

Disturbance model: a hand on the plate for 1 to 2.5 s pushes down (a random 50 to 400 g) and
rocks the plate at ~2.5 Hz; the items leave or arrive half-way. A lean ramps up in 0.2 s to
its force, wobbles by ±2 % and ramps down — and a device's own motion flag reads *stable*
during the plateau, as real heads do under a steady lean. Overload: the device reports
``OVERLOAD`` without a weight. Unplugged: no samples at all.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from gateway.drivers.contracts import ScaleStatus

__all__ = ["EpisodeKind", "ShelfTimeline", "TruthEvent"]


class EpisodeKind(StrEnum):
    MOVE = "move"  # a pick or put: hand on the plate, items change
    LEAN = "lean"
    OVERLOAD = "overload"
    UNPLUG = "unplug"


@dataclass(frozen=True, slots=True)
class TruthEvent:
    """What really happened: ``delta`` items at ``at`` (negative: picked)."""

    at: float
    delta: int
    count_after: int


@dataclass(slots=True)
class _Episode:
    kind: EpisodeKind
    start: float
    end: float
    grams: float = 0.0  # lean force, or hand push for a move
    swing: float = 0.0
    change_at: float = 0.0
    change: tuple[float, ...] = ()  # item weights added (move: put)
    remove: int = 0  # items removed (move: pick)


@dataclass(slots=True)
class ShelfTimeline:
    """One slot's weight over time. Script it first, then iterate :meth:`samples` once."""

    seed: int
    unit_grams: float
    initial_count: int = 10
    tray_grams: float = 60.0
    rate_hz: float = 10.0
    noise_grams: float = 1.0
    drift_grams_per_h: float = 0.0
    device_flag: bool = True  # the device reports its own stable flag (else None)
    resolution_grams: float = 0.1
    items: list[float] = field(default_factory=list)  # weights of the items on the slot
    truth: list[TruthEvent] = field(default_factory=list)
    _episodes: list[_Episode] = field(default_factory=list)
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)  # noqa: S311 - simulation
        if not self.items:
            self.items = [self.unit_grams] * self.initial_count

    @property
    def rng(self) -> random.Random:
        return self._rng

    # --- script -------------------------------------------------------------------------

    def _hand(self, at: float) -> _Episode:
        rng = self._rng
        duration = rng.uniform(1.0, 2.5)
        return _Episode(
            EpisodeKind.MOVE,
            at,
            at + duration,
            grams=rng.uniform(50.0, 400.0),
            swing=rng.uniform(0.3, 1.0) * self.unit_grams,
            change_at=at + duration / 2,
        )

    def _count_at(self, at: float) -> int:
        count = len(self.items)
        for event in self.truth:
            if event.at <= at:
                count = event.count_after
        return count

    def pick(self, at: float, items: int = 1) -> None:
        """A shopper takes ``items`` (random ones of those on the slot) at ``at``."""
        episode = self._hand(at)
        episode.remove = items
        after = self._count_at(at) - items
        if after < 0:
            raise ValueError(f"cannot pick {items} at {at}: only {after + items} on the slot")
        self._add(episode)
        self.truth.append(TruthEvent(at, -items, after))

    def put(self, at: float, weights: tuple[float, ...] | int = 1) -> None:
        """Items of the given weights (or that many of ``unit_grams``) are placed at ``at``."""
        if isinstance(weights, int):
            weights = (self.unit_grams,) * weights
        episode = self._hand(at)
        episode.change = weights
        self._add(episode)
        self.truth.append(TruthEvent(at, len(weights), self._count_at(at) + len(weights)))

    def lean(self, at: float, seconds: float, grams: float) -> None:
        """Someone leans on or presses the shelf: ``grams`` of force for ``seconds``."""
        self._add(_Episode(EpisodeKind.LEAN, at, at + seconds, grams=grams))

    def overload(self, at: float, seconds: float) -> None:
        self._add(_Episode(EpisodeKind.OVERLOAD, at, at + seconds))

    def unplug(self, at: float, seconds: float) -> None:
        self._add(_Episode(EpisodeKind.UNPLUG, at, at + seconds))

    def _add(self, episode: _Episode) -> None:
        starts = [e.start for e in self._episodes]
        self._episodes.insert(bisect.bisect(starts, episode.start), episode)
        self.truth.sort(key=lambda event: event.at)

    # --- samples ------------------------------------------------------------------------

    def samples(
        self, duration_s: float
    ) -> Iterator[tuple[float, float | None, bool | None, ScaleStatus]]:
        """``(t, raw_grams, device_stable, status)`` from t = 0 to ``duration_s``."""
        rng = self._rng
        gauss = rng.gauss
        step = 1.0 / self.rate_hz
        noise = self.noise_grams
        drift_per_s = self.drift_grams_per_h / 3600.0
        resolution = self.resolution_grams
        items = list(self.items)
        load = self.tray_grams + sum(items)
        episodes = iter(self._episodes)
        upcoming = next(episodes, None)
        active: list[_Episode] = []
        total = int(duration_s * self.rate_hz)
        flag = self.device_flag
        for index in range(total + 1):
            t = index * step
            while upcoming is not None and upcoming.start <= t:
                active.append(upcoming)
                upcoming = next(episodes, None)
            extra = 0.0
            moving = silent = False
            status = ScaleStatus.OK
            for episode in tuple(active):
                if t >= episode.end:
                    active.remove(episode)
                    continue
                kind = episode.kind
                if kind is EpisodeKind.MOVE:
                    if episode.change_at <= t and (episode.change or episode.remove):
                        load += self._apply(episode, items)
                    extra += self._hand_force(episode, t)
                    moving = True
                elif kind is EpisodeKind.LEAN:
                    since, until = t - episode.start, episode.end - t
                    ramp = min(1.0, since / 0.2, until / 0.2)
                    wobble = 1.0 + 0.02 * math.sin(2 * math.pi * 0.7 * since)
                    extra += episode.grams * ramp * wobble
                    moving = moving or ramp < 1.0
                elif kind is EpisodeKind.OVERLOAD:
                    status = ScaleStatus.OVERLOAD
                else:
                    silent = True
            if silent:  # items still change while nobody listens
                continue
            if status is not ScaleStatus.OK:
                yield t, None, None, status
                continue
            raw = load + extra + drift_per_s * t + gauss(0.0, noise)
            raw = round(raw / resolution) * resolution
            yield t, raw, (not moving) if flag else None, status

    @staticmethod
    def _hand_force(episode: _Episode, t: float) -> float:
        """The hand pushes down and rocks the plate, swelling and dying out."""
        since = t - episode.start
        envelope = math.sin(math.pi * since / (episode.end - episode.start))
        return envelope * (episode.grams + episode.swing * math.cos(2 * math.pi * 2.5 * since))

    def _apply(self, episode: _Episode, items: list[float]) -> float:
        """Carry out a move's item change once; returns the load change."""
        grams = sum(episode.change)
        items.extend(episode.change)
        for _ in range(episode.remove):
            grams -= items.pop(self._rng.randrange(len(items)))
        episode.change, episode.remove = (), 0
        return grams
