"""simulated.esl: queued delivery at the radio rate, only the latest content, failures, LED
flashes, check-ins, heartbeats, determinism."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from gateway.drivers.contracts import (
    Heartbeat,
    LabelContent,
    LabelDriver,
    LabelModel,
    LabelPalette,
    LabelReport,
    LabelReportKind,
)
from gateway.errors import DriverConfigError
from tests.devices.harness import make, plugin, take

MODEL = LabelModel(296, 128, LabelPalette.BWR, has_led=True)
QUIET: dict[str, Any] = {
    "seconds_per_label": 0.02,
    "checkin_interval_s": 86_400,
}  # no check-ins in a test


def content(label_id: str, tag: str, model: LabelModel = MODEL) -> LabelContent:
    return LabelContent(label_id, f"png {tag}".encode(), f"hash-{tag}", model)


def test_is_a_label_driver_with_generated_mac_ids() -> None:
    driver = make("simulated.esl", label_count=3, seconds_per_label=3.9)
    assert isinstance(make("simulated.esl"), LabelDriver)
    assert len(driver.label_ids) == 3
    assert all(len(i) == 16 and i == i.upper() and int(i, 16) >= 0 for i in driver.label_ids)
    assert driver.labels_per_minute == pytest.approx(60 / 3.9)
    assert make("simulated.esl", seconds_per_label=3, speed=4).labels_per_minute == 80


async def test_push_is_confirmed_by_the_label() -> None:
    driver = make("simulated.esl", label_count=2, **QUIET)
    await driver.open()
    label_id = driver.label_ids[1]
    await driver.push(content(label_id, "a"))
    assert driver.shown_hash(label_id) is None  # accepted, not shown
    assert driver.queued() == (label_id,)
    [report] = await take(driver.readings(), 1, LabelReport)
    await driver.close()
    assert report.kind is LabelReportKind.CONFIRMED
    assert (report.label_id, report.content_hash) == (label_id, "hash-a")
    assert report.evidence == "sim: label reported xfer complete"
    assert report.model == MODEL
    assert report.monotonic == 1000.0  # stamped by the injected clock
    assert driver.shown_hash(label_id) == "hash-a"
    assert driver.queued() == ()


async def test_a_newer_push_supersedes_queued_content() -> None:
    driver = make("simulated.esl", label_count=2, **QUIET)
    first, second = driver.label_ids
    await driver.push(content(first, "old"))
    await driver.push(content(second, "other"))
    await driver.push(content(first, "new"))
    assert driver.superseded == 1
    assert driver.queued() == (first, second)  # the label keeps its place in the queue
    reports: list[LabelReport] = await take(driver.readings(), 2, LabelReport)
    assert [(r.label_id, r.content_hash) for r in reports] == [
        (first, "hash-new"),
        (second, "hash-other"),
    ]
    assert driver.shown_hash(first) == "hash-new"


async def test_pushes_while_running_are_delivered_in_order() -> None:
    driver = make("simulated.esl", label_count=3, **QUIET)
    readings = driver.readings()
    try:
        for index, label_id in enumerate(driver.label_ids):
            await driver.push(content(label_id, str(index)))
            report = await anext(readings)
            assert isinstance(report, LabelReport)
            assert (report.label_id, report.content_hash) == (label_id, f"hash-{index}")
    finally:
        await readings.aclose()


async def test_failed_delivery_is_reported_and_nothing_shown() -> None:
    driver = make("simulated.esl", label_count=1, failure_rate=1.0, **QUIET)
    label_id = driver.label_ids[0]
    await driver.push(content(label_id, "x"))
    [report] = await take(driver.readings(), 1, LabelReport)
    assert report.kind is LabelReportKind.FAILED
    assert report.content_hash == "hash-x"
    assert "xfer timeout" in report.evidence
    assert driver.shown_hash(label_id) is None


async def test_content_cut_off_mid_delivery_stays_queued() -> None:
    driver = make("simulated.esl", label_count=1, seconds_per_label=600, heartbeat_s=0.01)
    label_id = driver.label_ids[0]
    await driver.push(content(label_id, "x"))
    await take(driver.readings(), 1, Heartbeat)
    assert driver.queued() == (label_id,)
    assert driver.shown_hash(label_id) is None


async def test_flash_is_recorded_and_reported() -> None:
    driver = make(
        "simulated.esl",
        labels=[
            {"label_id": "00000000000000A1"},
            {"label_id": "00000000000000A2", "model": {"width": 152, "has_led": False}},
        ],
        **QUIET,
    )
    await driver.flash("00000000000000A1", seconds=3)
    [report] = await take(driver.readings(), 1, LabelReport)
    assert report.kind is LabelReportKind.SEEN
    assert report.evidence == "sim: LED flashed for 3 s"
    assert driver.flashes("00000000000000A1") == 1
    with pytest.raises(DriverConfigError, match="no LED"):
        await driver.flash("00000000000000A2")


async def test_unknown_labels_and_wrong_sizes_are_refused() -> None:
    driver = make("simulated.esl", labels=[{"label_id": "00000000000000A1"}], **QUIET)
    with pytest.raises(DriverConfigError, match="unknown label 0000000000000000"):
        await driver.push(content("0000000000000000", "x"))
    with pytest.raises(DriverConfigError, match="unknown label"):
        await driver.flash("0000000000000000")
    with pytest.raises(DriverConfigError, match="152x152"):
        await driver.push(content("00000000000000A1", "x", LabelModel(152, 152, LabelPalette.BW)))


async def test_labels_check_in_with_battery_and_signal() -> None:
    driver = make("simulated.esl", label_count=2, checkin_interval_s=0.04, heartbeat_s=60)
    reports: list[LabelReport] = await take(driver.readings(), 4, LabelReport)
    assert all(r.kind is LabelReportKind.SEEN for r in reports)
    assert [r.label_id for r in reports] == list(driver.label_ids) * 2
    for report in reports:
        assert report.battery_mv is not None
        assert 2200 <= report.battery_mv <= 3100
        assert report.rssi is not None
        assert -100 <= report.rssi <= -30
        assert report.model == LabelModel(296, 128, LabelPalette.BWR, has_led=True)
        assert report.content_hash is None  # nothing shown yet


async def test_heartbeats_when_idle() -> None:
    driver = make("simulated.esl", label_count=0, heartbeat_s=0.02)
    heartbeats: list[Heartbeat] = await take(driver.readings(), 2, Heartbeat)
    assert heartbeats[0].detail == "0 queued"


async def checkins(seed: int, instance: str) -> list[LabelReport]:
    driver = make("simulated.esl", instance, seed=seed, label_count=3, checkin_interval_s=0.03)
    return await take(driver.readings(), 6, LabelReport)


async def test_deterministic_for_a_seed_and_instance() -> None:
    first = await checkins(1, "x")
    assert first == await checkins(1, "x")
    assert first != await checkins(1, "y")
    assert first != await checkins(2, "x")


@pytest.mark.parametrize(
    "options",
    [
        {"labels": [{"label_id": "not-hex"}]},
        {"labels": [{"label_id": "00000000000000a1"}]},  # upper-case hex only
        {"labels": [{"label_id": "00000000000000A1"}, {"label_id": "00000000000000A1"}]},
        {"labels": [{"label_id": "00000000000000A1", "model": {"palette": "rainbow"}}]},
        {"label_count": -1},
        {"failure_rate": 1.5},
        {"seconds_per_label": 0},
        {"checkin_interval_s": "often"},
        {"default_model": {"width": 2}},
        {"faults": {"crash_after_s": -1}},
        {"faults": {"explode": True}},
    ],
)
def test_garbage_options_are_rejected(options: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        plugin("simulated.esl").options_model.model_validate(options)
