"""Per-zone aggregates per interval, aligned to the clock: sans-IO.

Every visit that ends is added to its zone's interval (its dwell only: no identity is kept);
occupancy is sampled on each tick for the interval's peak. :meth:`ZoneStats.roll` hands over
the intervals that have ended.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

__all__ = ["ZoneInterval", "ZoneStats"]


@dataclass(frozen=True, slots=True)
class ZoneInterval:
    zone: str
    start: datetime
    end: datetime
    visits: int
    dwell_median_s: float | None
    dwell_p90_s: float | None
    peak_occupancy: int


@dataclass(slots=True)
class _Running:
    dwells: list[float] = field(default_factory=list)
    peak: int = 0


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]  # nearest rank


class ZoneStats:
    def __init__(self, zones: Iterable[str], interval_s: float) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.interval = timedelta(seconds=interval_s)
        self._zones = tuple(zones)
        self._running = {zone: _Running() for zone in self._zones}
        self._start: datetime | None = None

    def _aligned(self, now: datetime) -> datetime:
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        steps = (now - epoch) // self.interval
        return epoch + steps * self.interval

    def visit(self, zone: str, dwell_s: float, now: datetime) -> None:
        self._begin(now)
        running = self._running.get(zone)
        if running is not None:
            running.dwells.append(dwell_s)

    def occupancy(self, counts: Mapping[str, int], now: datetime) -> None:
        self._begin(now)
        for zone, count in counts.items():
            running = self._running.get(zone)
            if running is not None and count > running.peak:
                running.peak = count

    def roll(self, now: datetime, occupancy: Mapping[str, int]) -> list[ZoneInterval]:
        """The intervals ended by ``now`` (zones with neither visits nor anyone present are
        left out); the next interval starts with the current occupancy as its peak."""
        self._begin(now)
        assert self._start is not None
        if now < self._start + self.interval:
            return []
        end = self._start + self.interval
        done = []
        for zone, running in self._running.items():
            if running.dwells or running.peak:
                done.append(
                    ZoneInterval(
                        zone,
                        self._start,
                        end,
                        len(running.dwells),
                        statistics.median(running.dwells) if running.dwells else None,
                        _p90(running.dwells) if running.dwells else None,
                        running.peak,
                    )
                )
        self._running = {zone: _Running() for zone in self._zones}
        self._start = self._aligned(now)
        self.occupancy(occupancy, now)
        return done

    def _begin(self, now: datetime) -> None:
        if self._start is None:
            self._start = self._aligned(now)
