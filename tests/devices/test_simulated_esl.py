"""simulated.esl: queued delivery at the radio rate, only the latest content, failures, LED
flashes, check-ins, heartbeats, lost and late confirmations, label reboots, the image folder,
determinism."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from devices.simulated.esl import SimulatedEsl, SimulatedEslOptions
from gateway.clock import FakeClock
from gateway.drivers.contracts import (
    DriverContext,
    Heartbeat,
    InstanceMemory,
    LabelContent,
    LabelDriver,
    LabelModel,
    LabelPalette,
    LabelReport,
    LabelReportKind,
)
from gateway.errors import DriverConfigError, DriverUnavailableError, LabelPanelMismatchError
from tests.devices.harness import make, plugin, take
from tests.support.filesystems import tmpfs
from tests.waiting import patience

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
    with pytest.raises(LabelPanelMismatchError, match="152x152, the panel is 296x128") as caught:
        await driver.push(content("00000000000000A1", "x", LabelModel(152, 152, LabelPalette.BW)))
    assert (caught.value.label, caught.value.panel) == ("00000000000000A1", MODEL)


async def test_the_access_point_can_list_its_labels_when_read() -> None:
    big = {"width": 800, "height": 480, "palette": "bwr", "has_led": False}
    driver = make(
        "simulated.esl",
        labels=[{"label_id": "00000000000000A1"}, {"label_id": "00000000000000A2", "model": big}],
        announce_labels=True,
        **QUIET,
    )
    await driver.push(content("00000000000000A1", "a"))
    reports: list[LabelReport] = await take(driver.readings(), 3, LabelReport)
    assert [(r.label_id, r.kind, r.content_hash) for r in reports] == [
        ("00000000000000A1", LabelReportKind.SEEN, None),  # listed before the radio ran
        ("00000000000000A2", LabelReportKind.SEEN, None),
        ("00000000000000A1", LabelReportKind.CONFIRMED, "hash-a"),
    ]
    assert [r.model for r in reports[:2]] == [MODEL, LabelModel(800, 480, LabelPalette.BWR)]
    assert reports[0].evidence == "sim: listed by the access point"


async def test_a_swapped_panel_starts_blank_and_checks_in_with_its_model() -> None:
    driver = make("simulated.esl", labels=[{"label_id": "00000000000000A1"}], **QUIET)
    await driver.push(content("00000000000000A1", "a"))
    await take(driver.readings(), 1, LabelReport)
    assert driver.shown_hash("00000000000000A1") == "hash-a"
    big = LabelModel(800, 480, LabelPalette.BWR)
    driver.swap_panel("00000000000000A1", big)
    [report] = await take(driver.readings(), 1, LabelReport)
    assert (report.kind, report.model, report.content_hash) == (LabelReportKind.SEEN, big, None)
    assert report.evidence == "sim: new panel"
    with pytest.raises(LabelPanelMismatchError, match="the panel is 800x480"):
        await driver.push(content("00000000000000A1", "b"))
    await driver.push(content("00000000000000A1", "c", big))


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
    # Batteries drain with check-ins: every run is a new instance (a fresh memory), new labels.
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
        {"confirmation_latency_s": -0.1},
        {"lost_confirmation_rate": 1.01},
        {"lost_confirmation_rate": -0.5},
        {"reboot_rate_per_hour": -1},
        {"radio_jitter": 1.0},
        {"radio_jitter": -0.1},
        {"image_dir": ""},
        {"image_dir": 42},
        {"image_dir": "/shelf", "unknown_option": 1},
        {"push_log": ""},
        {"push_log": 3.5},
    ],
)
def test_garbage_options_are_rejected(options: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        plugin("simulated.esl").options_model.model_validate(options)


def test_an_image_dir_that_is_a_file_is_rejected(tmp_path: Path) -> None:
    file = tmp_path / "shelf"
    file.write_text("not a folder", encoding="utf-8")
    with pytest.raises(ValidationError, match="exists and is not a directory"):
        plugin("simulated.esl").options_model.model_validate({"image_dir": str(file)})


# --- late, lost and rebooting labels --------------------------------------------------------


async def collect(
    driver: Any, done: Callable[[list[LabelReport]], bool], *, within: float = 5.0
) -> list[LabelReport]:
    """Label reports from a fresh ``readings()`` until ``done(reports)``, checked after every
    reading (heartbeats too); the iterator is always closed."""
    found: list[LabelReport] = []
    readings = driver.readings()
    try:
        async with asyncio.timeout(patience(within)):
            async for reading in readings:
                if isinstance(reading, LabelReport):
                    found.append(reading)
                if done(found):
                    break
    finally:
        await readings.aclose()
    return found


def summary(reports: list[LabelReport]) -> list[tuple[str, str, str | None, str]]:
    return [(r.label_id, r.kind.value, r.content_hash, r.evidence) for r in reports]


async def test_a_lost_confirmation_is_seen_at_the_next_check_in(tmp_path: Path) -> None:
    driver = make(
        "simulated.esl",
        label_count=1,
        seconds_per_label=0.02,
        checkin_interval_s=0.05,
        lost_confirmation_rate=1.0,
        image_dir=str(tmp_path),
    )
    [label_id] = driver.label_ids
    await driver.push(content(label_id, "new"))
    reports = await collect(
        driver, lambda found: bool(found) and found[-1].content_hash == "hash-new"
    )
    assert all(r.kind is LabelReportKind.SEEN for r in reports)  # never CONFIRMED
    assert reports[-1].evidence == "sim: check-in"
    assert driver.shown_hash(label_id) == "hash-new"  # the label does show it
    assert (tmp_path / f"{label_id}.png").read_bytes() == b"png new"
    assert driver.lost_confirmations == 1
    assert driver.pending_confirmations() == ()  # and nothing is on its way


async def test_a_late_confirmation_follows_what_the_label_shows() -> None:
    driver = make(
        "simulated.esl",
        label_count=1,
        seconds_per_label=0.02,
        confirmation_latency_s=0.05,
        checkin_interval_s=86_400,
    )
    [label_id] = driver.label_ids
    await driver.push(content(label_id, "a"))
    [report] = await take(driver.readings(), 1, LabelReport)
    assert (report.kind, report.content_hash) == (LabelReportKind.CONFIRMED, "hash-a")
    assert report.evidence == "sim: label reported xfer complete"
    assert driver.pending_confirmations() == ()


@pytest.mark.parametrize("trigger", ["flash", "reboot"])
async def test_a_confirmation_on_its_way_is_never_overtaken(trigger: str) -> None:
    """The label shows the content first; the gateway hears later, but always before any newer
    news of the same label (a real access point forwards its frames in order)."""
    driver = make(
        "simulated.esl",
        label_count=2,
        seconds_per_label=0.02,
        confirmation_latency_s=3600,  # does not arrive by itself within the test
        checkin_interval_s=86_400,
        heartbeat_s=0.01,
    )
    label_id, other = driver.label_ids
    await driver.push(content(label_id, "new"))
    readings = driver.readings()
    try:
        async with asyncio.timeout(patience(5)):
            async for reading in readings:
                assert not isinstance(reading, LabelReport)  # nothing heard yet
                if driver.shown_hash(label_id) == "hash-new":
                    break
        assert driver.pending_confirmations() == (label_id,)
        await driver.flash(other)  # news of another label does not release it
        if trigger == "flash":
            await driver.flash(label_id)
        else:
            driver.reboot(label_id)
        reports = [await anext(readings) for _ in range(3)]
    finally:
        await readings.aclose()
    expected_last = (
        (label_id, "seen", "hash-new", "sim: LED flashed for 10 s")
        if trigger == "flash"
        else (label_id, "seen", None, "sim: label rebooted")  # back to blank
    )
    assert all(isinstance(r, LabelReport) for r in reports)
    assert summary(reports) == [
        (other, "seen", None, "sim: LED flashed for 10 s"),
        (label_id, "confirmed", "hash-new", "sim: label reported xfer complete"),
        expected_last,
    ]
    assert driver.pending_confirmations() == ()


async def test_a_rebooted_label_falls_back_to_its_previous_content(tmp_path: Path) -> None:
    driver = make("simulated.esl", label_count=1, image_dir=str(tmp_path), **QUIET)
    [label_id] = driver.label_ids
    image = tmp_path / f"{label_id}.png"
    for tag in ("old", "new"):
        await driver.push(content(label_id, tag))
        await take(driver.readings(), 1, LabelReport)
    await driver.push(content(label_id, "new"))  # the same content again: no new fallback
    await take(driver.readings(), 1, LabelReport)
    assert image.read_bytes() == b"png new"

    driver.reboot(label_id)
    assert driver.shown_hash(label_id) == "hash-old"
    assert image.read_bytes() == b"png old"
    assert shelf(tmp_path)["labels"][label_id]["content_hash"] == "hash-old"
    [report] = await take(driver.readings(), 1, LabelReport)
    assert (report.kind, report.content_hash) == (LabelReportKind.SEEN, "hash-old")
    assert report.evidence == "sim: label rebooted"
    assert driver.reboots == 1


async def test_a_label_rebooting_after_its_first_delivery_goes_blank(tmp_path: Path) -> None:
    driver = make("simulated.esl", label_count=1, image_dir=str(tmp_path), **QUIET)
    [label_id] = driver.label_ids
    await driver.push(content(label_id, "first"))
    await take(driver.readings(), 1, LabelReport)
    driver.reboot(label_id)
    [report] = await take(driver.readings(), 1, LabelReport)
    assert (report.evidence, report.content_hash) == ("sim: label rebooted", None)
    assert driver.shown_hash(label_id) is None
    assert not (tmp_path / f"{label_id}.png").exists()
    assert shelf(tmp_path)["labels"][label_id]["image"] is None
    with pytest.raises(DriverConfigError, match="unknown label"):
        driver.reboot("0000000000000000")


async def reboots(seed: int) -> list[str]:
    driver = make(
        "simulated.esl",
        seed=seed,
        label_count=4,
        reboot_rate_per_hour=3600,  # once a second per label...
        speed=50,  # ...compressed fifty times
        **QUIET,
    )
    reports = await collect(driver, lambda found: len(found) >= 8)
    assert all(r.evidence == "sim: label rebooted" for r in reports)
    assert driver.reboots >= 8
    return [r.label_id for r in reports]


async def test_labels_reboot_at_random_deterministically_for_a_seed() -> None:
    first = await reboots(1)
    assert len(set(first)) > 1  # not always the same label
    assert first == await reboots(1)
    assert first != await reboots(2)


async def outcomes(seed: int) -> tuple[list[tuple[str, str, str | None, str]], int, list[Any]]:
    driver = make(
        "simulated.esl",
        seed=seed,
        label_count=12,
        failure_rate=0.3,
        lost_confirmation_rate=0.3,
        radio_jitter=0.5,
        heartbeat_s=0.01,  # the last delivery's confirmation may be lost: look anyway
        **QUIET,
    )
    for index, label_id in enumerate(driver.label_ids):
        await driver.push(content(label_id, str(index)))
    reports = await collect(driver, lambda found: len(found) + driver.lost_confirmations == 12)
    assert driver.queued() == ()
    shown = [driver.shown_hash(label_id) for label_id in driver.label_ids]
    return summary(reports), driver.lost_confirmations, shown


async def test_delivery_outcomes_are_deterministic_for_a_seed_and_push_order() -> None:
    first = await outcomes(1)
    reports, lost, shown = first
    failed = sum(kind == "failed" for _, kind, _, _ in reports)
    assert 0 < failed < len(reports)
    assert lost > 0
    assert sum(hash_ is not None for hash_ in shown) == 12 - failed  # lost ones show theirs
    assert first == await outcomes(1)
    assert first != await outcomes(2)


def test_radio_jitter_varies_deliveries_around_the_same_mean() -> None:
    def radio_times(seed: int, jitter: float) -> list[float]:
        driver = make("simulated.esl", seed=seed, seconds_per_label=4, radio_jitter=jitter)
        return [driver._radio_time() for _ in range(200)]

    steady = radio_times(1, 0.0)
    assert set(steady) == {4.0}
    jittered = radio_times(1, 0.25)
    assert all(3.0 <= t <= 5.0 for t in jittered)
    assert len(set(jittered)) == 200
    assert sum(jittered) / 200 == pytest.approx(4.0, abs=0.1)
    assert jittered == radio_times(1, 0.25)
    assert jittered != radio_times(2, 0.25)
    assert make("simulated.esl", seconds_per_label=4, radio_jitter=0.25).labels_per_minute == 15


# --- the image folder -----------------------------------------------------------------------


def shelf(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / "shelf.json").read_text(encoding="utf-8"))
    return data


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.refresh = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img" and values.get("src"):
            self.sources.append(str(values["src"]))
        if tag == "meta" and values.get("http-equiv") == "refresh":
            self.refresh = True


def page_images(folder: Path) -> _Images:
    parser = _Images()
    parser.feed((folder / "index.html").read_text(encoding="utf-8"))
    parser.close()
    return parser


async def test_each_delivery_draws_the_exact_image_and_indexes_the_shelf(tmp_path: Path) -> None:
    folder = tmp_path / "labels" / "esl-ap-1"  # created, parents too
    driver = make("simulated.esl", label_count=2, image_dir=str(folder), **QUIET)
    shown, blank = driver.label_ids
    await driver.open()
    index = shelf(folder)
    assert index["driver"] == "dev"
    assert set(index["labels"]) == {shown, blank}
    assert all(entry["content_hash"] is None for entry in index["labels"].values())
    assert page_images(folder).sources == []

    await driver.push(content(shown, "a"))
    assert not (folder / f"{shown}.png").exists()  # accepted, not shown
    assert driver.image_path(shown) == folder / f"{shown}.png"
    [report] = await take(driver.readings(), 1, LabelReport)
    await driver.close()
    assert report.kind is LabelReportKind.CONFIRMED
    assert (folder / f"{shown}.png").read_bytes() == b"png a"  # exactly the pushed bytes
    assert not (folder / f"{blank}.png").exists()
    labels = shelf(folder)["labels"]
    assert labels[shown] == {
        "content_hash": "hash-a",
        "image": f"{shown}.png",
        "model": {"width": 296, "height": 128, "palette": "bwr", "has_led": True},
        "shown_at": "2026-11-23T09:00:00.000+00:00",  # the injected clock
        "battery_mv": labels[shown]["battery_mv"],
    }
    assert 2200 <= labels[shown]["battery_mv"] <= 3100
    assert labels[blank]["content_hash"] is None
    page = page_images(folder)
    assert page.refresh
    assert page.sources == [f"{shown}.png?v=hash-a"]
    assert all((folder / source.split("?")[0]).is_file() for source in page.sources)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["index.html", "shelf.json", f"{shown}.png"]
    )  # no temporary files left behind


async def test_a_failed_delivery_draws_nothing(tmp_path: Path) -> None:
    driver = make("simulated.esl", label_count=1, failure_rate=1.0, image_dir=tmp_path, **QUIET)
    [label_id] = driver.label_ids
    await driver.push(content(label_id, "x"))
    [report] = await take(driver.readings(), 1, LabelReport)
    assert report.kind is LabelReportKind.FAILED
    assert driver.failed_deliveries == 1
    assert not (tmp_path / f"{label_id}.png").exists()
    assert shelf(tmp_path)["labels"][label_id]["content_hash"] is None


async def test_images_left_by_an_earlier_run_of_blank_labels_are_removed(tmp_path: Path) -> None:
    driver = make("simulated.esl", label_count=2, image_dir=tmp_path, **QUIET)
    stale = tmp_path / f"{driver.label_ids[0]}.png"
    stale.write_bytes(b"yesterday")
    notes = tmp_path / "notes.txt"
    notes.write_text("the technician's", encoding="utf-8")
    await driver.open()
    assert not stale.exists()  # a fresh access point's labels show nothing yet
    assert notes.read_text(encoding="utf-8") == "the technician's"  # not ours: kept


async def test_an_unusable_image_dir_fails_open_clearly(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    driver = make("simulated.esl", "esl-1", image_dir=blocker / "shelf")
    blocker.write_text("a file where a folder should be", encoding="utf-8")
    with pytest.raises(DriverConfigError, match=r"esl-1: image_dir .*blocker/shelf") as caught:
        await driver.open()
    assert caught.value.driver == "esl-1"
    assert "writable directory" in str(caught.value)
    with tmpfs(tmp_path / "ro", read_only=True) as read_only:
        driver = make("simulated.esl", image_dir=read_only / "shelf")
        with pytest.raises(DriverConfigError, match="Read-only file system"):
            await driver.open()


async def test_a_full_disk_is_transient_and_the_content_stays_queued(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", size="16k") as small:
        driver = make("simulated.esl", label_count=1, image_dir=small, **QUIET)
        [label_id] = driver.label_ids
        await driver.open()
        big = LabelContent(label_id, bytes(64 * 1024), "hash-big", MODEL)
        await driver.push(big)
        with pytest.raises(DriverUnavailableError, match="No space left on device"):
            await take(driver.readings(), 1, LabelReport)
        assert driver.queued() == (label_id,)  # the radio tries again after the restart
        assert driver.shown_hash(label_id) is None
        assert not (small / f"{label_id}.png").exists()
        assert not list(small.glob(".*.tmp"))


async def test_labels_keep_showing_their_content_across_a_driver_restart(tmp_path: Path) -> None:
    memory = InstanceMemory()  # what the supervisor hands every driver object of the instance
    driver = make("simulated.esl", label_count=2, image_dir=str(tmp_path), memory=memory, **QUIET)
    await driver.open()
    label_id, other = driver.label_ids
    await driver.push(content(label_id, "a"))
    await take(driver.readings(), 1, LabelReport)
    await driver.push(content(other, "queued"))  # at the access point, not on the label yet
    await driver.close()
    # The supervisor builds a new driver object for the same instance after a failure.
    restarted = make(
        "simulated.esl", label_count=2, image_dir=str(tmp_path), memory=memory, **QUIET
    )
    await restarted.open()
    assert restarted.shown_hash(label_id) == "hash-a"
    assert restarted.shown_hash(other) is None
    assert restarted.queued() == ()  # the access point's queue did not survive
    assert (tmp_path / f"{label_id}.png").read_bytes() == b"png a"
    await restarted.close()
    # Another instance, or a changed panel, starts blank.
    elsewhere = make("simulated.esl", "other", labels=[{"label_id": label_id}], **QUIET)
    assert elsewhere.shown_hash(label_id) is None
    bigger = {"width": 400, "height": 300}
    changed = make("simulated.esl", label_count=2, default_model=bigger, memory=memory, **QUIET)
    assert changed.shown_hash(label_id) is None
    again = make("simulated.esl", label_count=2, memory=memory, **QUIET)
    assert again.shown_hash(label_id) is None  # the panel was replaced: what it showed is gone


# --- a gateway process restart: labels are physical, they keep their picture ----------------

IDS = ("00000000000000A1", "00000000000000A2", "00000000000000A3", "00000000000000A4")


def new_process(folder: Path, labels: list[dict[str, Any]], **options: Any) -> SimulatedEsl:
    """The driver as a freshly started gateway process builds it: nothing in memory."""
    settings = SimulatedEslOptions.model_validate(
        {"labels": labels, "image_dir": str(folder), **QUIET, **options}
    )
    return SimulatedEsl(DriverContext("esl-1", FakeClock(), InstanceMemory()), settings)


async def test_labels_keep_their_content_across_a_gateway_process_restart(tmp_path: Path) -> None:
    first = new_process(tmp_path, [{"label_id": i} for i in IDS])
    await first.open()
    for label_id in IDS[:3]:
        await first.push(content(label_id, label_id[-2:]))
    await take(first.readings(), 3, LabelReport)
    await first.close()
    bigger = {"width": 400, "height": 300, "palette": "bwr", "has_led": True}
    # A1 as before; A2's panel changed; A3 is no longer configured; A4 was blank.
    labels = [{"label_id": IDS[0]}, {"label_id": IDS[1], "model": bigger}, {"label_id": IDS[3]}]
    second = new_process(tmp_path, labels)
    await second.open()
    assert second.shown_hash(IDS[0]) == "hash-A1"
    assert second.shown_hash(IDS[1]) is None  # another panel: starts blank
    assert second.shown_hash(IDS[3]) is None
    assert (tmp_path / f"{IDS[0]}.png").read_bytes() == b"png A1"
    assert not (tmp_path / f"{IDS[1]}.png").exists()
    assert shelf(tmp_path)["labels"][IDS[0]]["content_hash"] == "hash-A1"
    # The restored label checks in with what it shows, and a reboot has nothing older.
    second.reboot(IDS[0])
    assert second.shown_hash(IDS[0]) is None


async def test_content_shown_since_the_last_index_write_survives_a_kill(tmp_path: Path) -> None:
    first = new_process(tmp_path, [{"label_id": i} for i in IDS[:2]])
    await first.open()
    readings = first.readings()
    try:
        for tag in ("old", "new"):
            await first.push(content(IDS[0], tag))
            report = await anext(readings)
            assert isinstance(report, LabelReport)
            assert (report.kind, report.content_hash) == (LabelReportKind.CONFIRMED, f"hash-{tag}")
        # Killed now: the index (rewritten at most twice a second) does not know it yet.
        assert shelf(tmp_path)["labels"][IDS[0]]["content_hash"] == "hash-old"
        second = new_process(tmp_path, [{"label_id": i} for i in IDS[:2]])
        await second.open()
        assert second.shown_hash(IDS[0]) == "hash-new"  # replayed from shelf.journal
        assert (tmp_path / f"{IDS[0]}.png").read_bytes() == b"png new"
        assert second.shown_hash(IDS[1]) is None
        assert shelf(tmp_path)["labels"][IDS[0]]["content_hash"] == "hash-new"
        assert not (tmp_path / "shelf.journal").exists()  # in the index now
    finally:
        await readings.aclose()  # type: ignore[attr-defined]


WRONG_PALETTE = (
    b'{"driver": "esl-1", "labels": {"00000000000000A1": {"content_hash": "hash-A1", '
    b'"model": {"width": 296, "height": 128, "palette": "rainbow", "has_led": true}}}}'
)


@pytest.mark.parametrize(
    ("index", "warns"),
    [
        (b"\x00\xffnot json{", True),
        (b"", True),
        (b"[1, 2, 3]", True),
        (b'{"driver": "another-ap", "labels": {}}', True),
        (b'{"driver": "esl-1", "labels": "all of them"}', True),
        (b'{"driver": "esl-1", "labels": {"00000000000000A1": {"content_hash": 5}}}', False),
        (b'{"driver": "esl-1", "labels": {"00000000000000A1": "shows a price"}}', False),
        (WRONG_PALETTE, False),
    ],
)
async def test_a_garbage_index_leaves_the_labels_blank(
    tmp_path: Path, index: bytes, warns: bool, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / f"{IDS[0]}.png").write_bytes(b"png A1")
    (tmp_path / "shelf.json").write_bytes(index)
    (tmp_path / "shelf.journal").write_bytes(b'{"label": "00000000000000A1", "content_hash"\n')
    driver = new_process(tmp_path, [{"label_id": IDS[0]}])
    await driver.open()  # never raises for what it reads
    assert driver.shown_hash(IDS[0]) is None
    assert not (tmp_path / f"{IDS[0]}.png").exists()  # blank: the stale image is removed
    assert shelf(tmp_path)["driver"] == "esl-1"  # and the folder is usable again
    assert ("the labels start blank" in caplog.text) is warns


async def test_images_without_an_index_are_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    driver = new_process(tmp_path, [{"label_id": IDS[0]}])
    await driver.open()  # a fresh folder: nothing to say
    assert "start blank" not in caplog.text
    (tmp_path / "shelf.json").unlink()
    (tmp_path / f"{IDS[0]}.png").write_bytes(b"png A1")
    await new_process(tmp_path, [{"label_id": IDS[0]}]).open()
    assert "has label images but no shelf.json" in caplog.text


async def test_a_label_whose_image_is_gone_starts_blank(tmp_path: Path) -> None:
    first = new_process(tmp_path, [{"label_id": IDS[0]}])
    await first.open()
    await first.push(content(IDS[0], "a"))
    await take(first.readings(), 1, LabelReport)
    (tmp_path / f"{IDS[0]}.png").unlink()
    second = new_process(tmp_path, [{"label_id": IDS[0]}])
    await second.open()
    assert second.shown_hash(IDS[0]) is None


async def test_the_push_log_counts_every_push_across_driver_objects(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "pushes.txt"  # its folder is created
    first = new_process(tmp_path / "shelf", [{"label_id": i} for i in IDS[:2]], push_log=log)
    await first.push(content(IDS[0], "a"))
    await first.push(content(IDS[0], "b"))  # superseded at the access point, still a push
    second = new_process(tmp_path / "shelf", [{"label_id": i} for i in IDS[:2]], push_log=log)
    await second.push(content(IDS[1], "c"))
    with pytest.raises(DriverConfigError):
        await second.push(content("00000000000000FF", "d"))  # refused: not logged
    assert log.read_text(encoding="utf-8").splitlines() == [
        f"{IDS[0]} hash-a",
        f"{IDS[0]} hash-b",
        f"{IDS[1]} hash-c",
    ]


async def test_an_unwritable_push_log_fails_the_push(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file", encoding="utf-8")
    driver = new_process(
        tmp_path / "shelf", [{"label_id": IDS[0]}], push_log=tmp_path / "blocker" / "log"
    )
    with pytest.raises(DriverUnavailableError, match="push_log"):
        await driver.push(content(IDS[0], "a"))
    assert driver.queued() == ()


def test_a_push_log_that_is_a_directory_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="is a directory"):
        plugin("simulated.esl").options_model.model_validate({"push_log": str(tmp_path)})
