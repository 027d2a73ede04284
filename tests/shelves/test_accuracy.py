"""The accuracy harness as tests: the issue's goals, asserted per scenario (committed seeds).

``python -m tests.shelves.report`` prints the same scenarios as a table.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest

from tests.shelves.harness import SCENARIOS, Scenario, ScenarioResult, run_scenario

BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}
DAY = 24 * 3600  # a simulated day at 10 Hz takes seconds: those scenarios are slow


def each_scenario() -> list[Any]:
    return [
        pytest.param(s, id=s.name, marks=[pytest.mark.slow] if s.duration_s >= DAY else [])
        for s in SCENARIOS
    ]


@functools.cache
def result_of(name: str) -> ScenarioResult:
    """Each scenario runs once per session, however many goals look at it."""
    return run_scenario(BY_NAME[name])


@pytest.mark.parametrize("scenario", each_scenario())
def test_never_a_false_event_or_a_wrong_count(scenario: Scenario) -> None:
    result = result_of(scenario.name)
    assert result.false == 0
    assert result.wrong == 0
    assert result.counts_wrong == 0
    assert result.missed == 0  # every truth event is counted or honestly ambiguous


@pytest.mark.parametrize(
    "name",
    [
        "clean single items noise 0.5 g",
        "noise 2 g + drift 5 g/h",
        "single items, no device flag",
        "multi-item picks/puts",
    ],
)
def test_every_event_right_on_single_and_multi_item_scenarios(name: str) -> None:
    result = result_of(name)
    assert result.truth > 100
    assert result.right == result.truth
    assert result.ambiguous == 0
    assert result.count_accuracy == 1.0


@pytest.mark.slow
def test_leaning_noise_and_drift_for_a_day_give_no_event_at_all() -> None:
    result = result_of("leaning+noise+drift 24 h")
    assert result.scenario.duration_s == 24 * 3600
    assert (result.right, result.false, result.ambiguous, result.recounts) == (0, 0, 0, 0)


def test_look_alike_skus_are_ambiguous_never_wrong() -> None:
    result = result_of("look-alike SKUs 100/108 g")
    assert result.ambiguous > 0  # undecidable changes exist and are reported as such
    assert result.right > 0  # decidable ones are still counted
    assert result.wrong == 0
    assert result.counts_wrong == 0


@pytest.mark.parametrize(
    ("name", "fault"), [("overload episodes", "overload"), ("unplugged 60 s", "no_data")]
)
def test_faults_are_raised_and_cleared(name: str, fault: str) -> None:
    result = result_of(name)
    assert fault in result.faults_raised
    assert result.faults_active_at_end == ()
    assert result.right == result.truth
