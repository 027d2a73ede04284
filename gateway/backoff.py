"""Capped exponential backoff with full jitter (sans-IO: returns delays, never sleeps).

Full jitter spreads the reconnects of thousands of stores after an HQ outage instead of
having them knock in lock-step. A small floor keeps a failing loop from spinning.
"""

from __future__ import annotations

import math
import random

__all__ = ["Backoff"]


class Backoff:
    """Delays for successive retries: ``uniform(0, min(maximum, initial * multiplier**n))``,
    never below :attr:`floor`. ``reset()`` after a success starts again from ``initial``."""

    def __init__(
        self,
        initial: float,
        maximum: float,
        *,
        multiplier: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        if not (0 < initial <= maximum < math.inf) or not (1 <= multiplier < math.inf):
            raise ValueError("need 0 < initial <= maximum (finite) and 1 <= multiplier (finite)")
        self.initial = initial
        self.maximum = maximum
        self.multiplier = multiplier
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._attempts = 0
        self._ceiling = initial

    @property
    def attempts(self) -> int:
        """Delays handed out since the last :meth:`reset`."""
        return self._attempts

    @property
    def floor(self) -> float:
        return self.initial / 10

    def next_delay(self) -> float:
        delay = max(self.floor, self._rng.uniform(0, self._ceiling))
        self._attempts += 1
        # Grown step by step (not initial * multiplier**n) so it can never overflow.
        self._ceiling = min(self.maximum, self._ceiling * self.multiplier)
        return delay

    def reset(self) -> None:
        self._attempts = 0
        self._ceiling = self.initial
