"""Backoff: delays stay within [floor, maximum], grow by the multiplier, reset, never overflow."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.backoff import Backoff


class CeilingRandom(random.Random):
    """Jitter that always picks the top of the range, so delays show the ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


class BottomRandom(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return a


@given(
    initial=st.floats(0.001, 10),
    factor=st.floats(1, 1000),
    multiplier=st.floats(1, 1e6),
    seed=st.integers(0, 2**32),
    attempts=st.integers(1, 300),
)
def test_delays_stay_between_floor_and_maximum(
    initial: float, factor: float, multiplier: float, seed: int, attempts: int
) -> None:
    backoff = Backoff(initial, initial * factor, multiplier=multiplier, rng=random.Random(seed))
    for _ in range(attempts):
        delay = backoff.next_delay()
        assert backoff.floor <= delay <= backoff.maximum
    assert backoff.attempts == attempts
    backoff.reset()
    assert backoff.attempts == 0


def test_ceiling_grows_by_the_multiplier_then_caps_and_reset_starts_over() -> None:
    backoff = Backoff(1, 8, rng=CeilingRandom())
    assert [backoff.next_delay() for _ in range(6)] == [1, 2, 4, 8, 8, 8]
    backoff.reset()
    assert backoff.next_delay() == 1
    tripled = Backoff(1, 20, multiplier=3, rng=CeilingRandom())
    assert [tripled.next_delay() for _ in range(4)] == [1, 3, 9, 20]


def test_floor_keeps_a_failing_loop_from_spinning() -> None:
    backoff = Backoff(0.5, 10, rng=BottomRandom())
    assert {backoff.next_delay() for _ in range(5)} == {0.05}


def test_huge_multipliers_and_attempt_counts_do_not_overflow() -> None:
    backoff = Backoff(1, 60, multiplier=1e300, rng=CeilingRandom())
    delays = [backoff.next_delay() for _ in range(5000)]
    assert delays[0] == 1
    assert set(delays[1:]) == {60}


@pytest.mark.parametrize(
    ("initial", "maximum", "multiplier"),
    [(0, 1, 2), (-1, 1, 2), (2, 1, 2), (1, float("inf"), 2), (1, 2, 0.5), (float("nan"), 1, 2)],
)
def test_nonsense_is_refused(initial: float, maximum: float, multiplier: float) -> None:
    with pytest.raises(ValueError, match="initial"):
        Backoff(initial, maximum, multiplier=multiplier)
