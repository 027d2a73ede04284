"""Scripted weight on a simulated scale: what lies on the plate at each moment.

A :class:`WeightTimeline` is either a list of ``(t, grams, stable)`` points — the load steps to
``grams`` at ``t`` seconds after the simulator started and stays there until the next point —
or any callable ``t -> (grams, stable)``. The simulated device derives gross and net from this
load and its own zero and tare, as a real indicator does.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

__all__ = ["LoadAt", "WeightTimeline"]

#: ``t`` (seconds since the simulator started) → ``(load in grams, stable)``.
LoadAt = Callable[[float], tuple[float, bool]]


class WeightTimeline:
    """Load on the plate over time (see the module docstring)."""

    def __init__(self, script: Sequence[tuple[float, float, bool]] | LoadAt) -> None:
        if callable(script):
            self._at: LoadAt = script
            return
        points = sorted(script, key=lambda point: point[0])
        if not points:
            raise ValueError("a timeline needs at least one point")
        times = [t for t, _grams, _stable in points]

        def at(t: float) -> tuple[float, bool]:
            index = max(0, bisect.bisect_right(times, t) - 1)
            _t, grams, stable = points[index]
            return grams, stable

        self._at = at

    @classmethod
    def constant(cls, grams: float, *, stable: bool = True) -> WeightTimeline:
        return cls([(0.0, grams, stable)])

    def at(self, t: float) -> tuple[float, bool]:
        return self._at(t)
