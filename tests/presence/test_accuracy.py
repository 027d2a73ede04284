"""The accuracy goals on scripted walks with ground truth (fixed seeds; the full set is
bench/presence_accuracy.py): no phantom visit from pass-bys, median dwell error <= 3 s on
60 s visits, >= 95 % of visit time in the right zone."""

from __future__ import annotations

import statistics

from tests.support.rf_walk import detect, scenario, score


def test_the_default_tuning_meets_the_goals_on_committed_walks() -> None:
    errors: list[float] = []
    right: list[float] = []
    for seed in range(1, 9):
        scene = scenario(seed)
        accuracy = score(scene, detect(scene, seed))
        assert accuracy.phantoms == 0, f"seed {seed}: a pass-by made a visit"
        assert accuracy.missed == 0, f"seed {seed}: a 60 s visit went unseen"
        errors += accuracy.dwell_errors
        right.append(accuracy.right_zone_share)
    assert statistics.median(errors) <= 3.0
    assert statistics.mean(right) >= 0.95


def test_the_harness_can_fail() -> None:
    """A tracker that never enters is scored as missing every visit (the scoring is not
    vacuous)."""
    scene = scenario(1)
    accuracy = score(scene, [])
    assert accuracy.missed == len(scene.visits)
    assert accuracy.right_zone_share == 0.0
