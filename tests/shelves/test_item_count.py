"""decide_count: the count arithmetic that turns a change of grams into items, or refuses to."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.shelves.item_count import decide_count


def test_decide_count_rounds_within_tolerance_only() -> None:
    def decide(grams: float, spread: float = 0.02) -> int | None:
        return decide_count(
            grams, unit_grams=100, tolerance=0.25, item_spread=spread, margin_grams=3
        ).items

    assert decide(-100) == -1
    assert decide(305) == 3
    assert decide(312) is None  # 3 items of 104 g: outside the 2 % spread
    assert decide(10) == 0  # a touch
    assert decide(-150) is None  # half an item: never rounded
    assert decide(-127) is None  # beyond the tolerance
    # 7 look-alikes of 108 g (756 g) are 8 items of 94.5 g too once the spread allows it.
    assert decide(756, spread=0.09) is None
    assert decide(324, spread=0.09) == 3
    full = decide_count(200, unit_grams=100, tolerance=0.25, item_spread=0, margin_grams=1)
    assert full.confidence == 1.0
    assert full.candidates == (2,)


@settings(max_examples=300, deadline=None)
@given(
    items=st.integers(min_value=0, max_value=40),
    seed=st.integers(min_value=0, max_value=2**32),
    spread=st.floats(min_value=0.0, max_value=0.2),
    sign=st.sampled_from([-1, 1]),
)
def test_decide_count_is_never_wrong_when_items_stay_within_the_spread(
    items: int, seed: int, spread: float, sign: int
) -> None:
    rng = random.Random(seed)
    grams = sum(100 * rng.uniform(1 - spread, 1 + spread) for _ in range(items))
    grams += rng.uniform(-3, 3)  # measurement noise within the margin
    decision = decide_count(
        sign * grams, unit_grams=100, tolerance=0.25, item_spread=spread, margin_grams=3
    )
    assert decision.items in {None, sign * items} or (items == 0 and decision.items == 0)
