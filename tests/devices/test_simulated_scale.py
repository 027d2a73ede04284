"""simulated.scale: plausible shelf weights, shoppers, restocking, zero/tare, determinism."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.drivers.contracts import ScaleDriver, ScaleStatus, WeightSample
from gateway.errors import DriverConfigError
from tests.devices.harness import make, plugin, take

UNIT = 200.0
NOISE = 0.5


def channel(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "channel": "a",
        "unit_grams": UNIT,
        "tray_grams": 50,
        "initial_count": 8,
        "capacity": 10,
        "pick_interval_s": 20,
        "restock_below": 1,
        "restock_delay_s": 30,
    }
    return spec | overrides


def test_is_a_scale_driver_with_its_channels() -> None:
    driver = make("simulated.scale", channels=[channel(), channel(channel="b")])
    assert isinstance(make("simulated.scale"), ScaleDriver)
    assert driver.channels == ("a", "b")
    assert driver.true_counts() == {"a": 8, "b": 8}


async def test_every_channel_reports_each_tick_with_the_injected_clock() -> None:
    driver = make("simulated.scale", sample_rate_hz=200, channels=[channel(), channel(channel="b")])
    await driver.open()
    samples: list[WeightSample] = await take(driver.readings(), 6, WeightSample)
    await driver.close()
    assert [s.channel for s in samples] == ["a", "b"] * 3
    assert all(s.status is ScaleStatus.OK for s in samples)
    assert {s.monotonic for s in samples} == {1000.0}  # FakeClock's, never the real clock


async def test_a_shopper_visit_unsettles_then_settles_at_whole_items() -> None:
    driver = make(
        "simulated.scale",
        seed=5,
        sample_rate_hz=200,
        speed=400,
        noise_grams=NOISE,
        channels=[channel()],
    )
    seen: list[tuple[WeightSample, int]] = []
    readings = driver.readings()
    try:
        async for sample in readings:
            seen.append((sample, driver.true_counts()["a"]))
            if len({count for _, count in seen}) >= 3 and sample.stable:
                break
    finally:
        await readings.aclose()
    counts = [count for _, count in seen]
    assert counts[0] == 8
    assert any(not sample.stable for sample, _ in seen), "a visit should rock the plate"
    for sample, count in seen:
        if sample.stable:
            # Settled: net is the items alone (tared on the tray), within noise.
            assert sample.net_grams == pytest.approx(count * UNIT, abs=6 * NOISE)
            assert sample.gross_grams == pytest.approx(50 + count * UNIT, abs=6 * NOISE)
    stable = [(s.net_grams or 0.0, c) for s, c in seen if s.stable]
    changes = [(b[0] - a[0], b[1] - a[1]) for a, b in itertools.pairwise(stable) if a[1] != b[1]]
    assert changes
    for grams, items in changes:
        assert grams / UNIT == pytest.approx(items, abs=0.05)


async def test_staff_restock_a_low_slot_to_capacity() -> None:
    driver = make(
        "simulated.scale",
        sample_rate_hz=200,
        speed=1000,
        channels=[channel(initial_count=1, pick_interval_s=10**6, restock_delay_s=20)],
    )
    samples = await take(driver.readings(), 20, WeightSample)
    assert driver.true_counts()["a"] == 10
    assert samples[-1].net_grams == pytest.approx(10 * UNIT, abs=5)


async def test_tare_and_zero() -> None:
    driver = make(
        "simulated.scale",
        sample_rate_hz=200,
        noise_grams=0,
        channels=[channel(initial_count=3, pick_interval_s=10**6)],
    )
    [sample] = await take(driver.readings(), 1, WeightSample)
    assert (sample.gross_grams, sample.net_grams) == (650, 600)
    await driver.tare("a")
    [sample] = await take(driver.readings(), 1, WeightSample)
    assert (sample.gross_grams, sample.net_grams) == (650, 0)
    await driver.zero("a")
    [sample] = await take(driver.readings(), 1, WeightSample)
    assert (sample.gross_grams, sample.net_grams) == (0, 0)
    with pytest.raises(DriverConfigError, match="unknown channel 'b'"):
        await driver.tare("b")
    with pytest.raises(DriverConfigError, match="unknown channel 'b'"):
        await driver.zero("b")


async def first_samples(seed: int, instance: str, count: int = 40) -> list[WeightSample]:
    driver = make("simulated.scale", instance, seed=seed, sample_rate_hz=200, speed=100)
    return await take(driver.readings(), count, WeightSample)


async def test_deterministic_for_a_seed_and_instance() -> None:
    first = await first_samples(1, "x")
    assert first == await first_samples(1, "x")
    assert first != await first_samples(1, "y")
    assert first != await first_samples(2, "x")


@pytest.mark.parametrize(
    "options",
    [
        {"sample_rate_hz": -1},
        {"sample_rate_hz": "fast"},
        {"noise_grams": -0.1},
        {"speed": 0},
        {"channels": []},
        {"channels": [channel(unit_grams=0)]},
        {"channels": [channel(initial_count=11)]},
        {"channels": [channel(restock_below=10)]},
        {"channels": [channel(put_back_ratio=1.5)]},
        {"channels": [channel(), channel()]},
        {"channels": [channel(colour="red")]},
        {"bogus": 1},
        {"faults": {"fail_open_times": -1}},
    ],
)
def test_garbage_options_are_rejected(options: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        plugin("simulated.scale").options_model.model_validate(options)


def test_options_are_frozen() -> None:
    options: Any = plugin("simulated.scale").options_model.model_validate({})
    with pytest.raises(ValidationError):
        options.seed = 3
