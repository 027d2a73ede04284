"""Capped exponential backoff with full jitter (sans-IO: returns delays, never sleeps).

Full jitter spreads the reconnects of thousands of stores after an HQ outage instead of
having them knock in lock-step. A small floor keeps a failing loop from spinning.
"""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    def __init__(
        self,
        initial: float,
        maximum: float,
        *,
        multiplier: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        if initial <= 0 or maximum < initial or multiplier < 1:
            raise ValueError("need 0 < initial <= maximum and multiplier >= 1")
        self.initial = initial
        self.maximum = maximum
        self.multiplier = multiplier
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._attempts = 0

    @property
    def attempts(self) -> int:
        return self._attempts

    @property
    def floor(self) -> float:
        return self.initial / 10

    def next_delay(self) -> float:
        ceiling = min(self.maximum, self.initial * self.multiplier ** min(self._attempts, 64))
        self._attempts += 1
        return max(self.floor, self._rng.uniform(0, ceiling))

    def reset(self) -> None:
        self._attempts = 0
