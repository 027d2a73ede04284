"""Backoff bounds (property-based) and the entry-point registry."""

from __future__ import annotations

import random
from importlib.metadata import EntryPoint

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.backoff import Backoff
from gateway.drivers.registry import DriverRegistry
from gateway.errors import DriverConfigError

NOT_A_PLUGIN = object()


@given(
    initial=st.floats(0.001, 10),
    factor=st.floats(1, 100),
    seed=st.integers(0, 2**32),
    attempts=st.integers(1, 200),
)
def test_delays_stay_between_floor_and_maximum(
    initial: float, factor: float, seed: int, attempts: int
) -> None:
    backoff = Backoff(initial, initial * factor, rng=random.Random(seed))
    for _ in range(attempts):
        delay = backoff.next_delay()
        assert backoff.floor <= delay <= backoff.maximum
    assert backoff.attempts == attempts
    backoff.reset()
    assert backoff.attempts == 0


def test_backoff_grows_then_caps() -> None:
    backoff = Backoff(1, 8, rng=random.Random(1))
    ceilings = []
    for _ in range(6):
        ceilings.append(min(8, 1 * 2**backoff.attempts))
        backoff.next_delay()
    assert ceilings == [1, 2, 4, 8, 8, 8]


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="initial"):
        Backoff(0, 1)
    with pytest.raises(ValueError, match="initial"):
        Backoff(2, 1)


def test_installed_simulated_drivers_are_listed_without_importing() -> None:
    registry = DriverRegistry.from_entry_points()
    assert {"simulated.scale", "simulated.beacon", "simulated.esl"} <= set(registry.names())
    assert "simulated.scale" in registry
    assert "nope" not in registry
    with pytest.raises(KeyError):
        registry.load("nope")


def test_broken_plugins_are_config_errors() -> None:
    registry = DriverRegistry(
        {
            "missing": EntryPoint("missing", "no_such_module_xyz:PLUGIN", "storegw.drivers"),
            "wrong": EntryPoint("wrong", f"{__name__}:NOT_A_PLUGIN", "storegw.drivers"),
        }
    )
    with pytest.raises(DriverConfigError, match="failed to import"):
        registry.load("missing")
    with pytest.raises(DriverConfigError, match="not a DriverPlugin"):
        registry.load("wrong")
