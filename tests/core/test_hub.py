"""Reading hub: fan-out to subscribers, bounded live view."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.drivers.contracts import (
    Advertisement,
    Heartbeat,
    LabelReport,
    LabelReportKind,
    Reading,
    ScaleStatus,
    WeightSample,
)
from gateway.hub import ReadingHub

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def sample(channel: str, grams: float) -> WeightSample:
    return WeightSample(channel, grams, grams, True, ScaleStatus.OK, 10.0, NOW)


def test_subscribers_get_every_reading_until_they_unsubscribe() -> None:
    hub = ReadingHub()
    seen: list[tuple[str, Reading]] = []
    unsubscribe = hub.subscribe(lambda device, reading: seen.append((device, reading)))
    hub.publish("shelf-a", sample("slot-1", 100.0))
    unsubscribe()
    hub.publish("shelf-a", sample("slot-1", 90.0))
    assert seen == [("shelf-a", sample("slot-1", 100.0))]


def test_a_failing_subscriber_does_not_starve_the_others() -> None:
    hub = ReadingHub()
    seen: list[str] = []

    def broken(device: str, reading: Reading) -> None:
        raise RuntimeError("bug")

    hub.subscribe(broken)
    hub.subscribe(lambda device, reading: seen.append(device))
    hub.publish("shelf-a", sample("slot-1", 1.0))
    assert seen == ["shelf-a"]


def test_summary_per_family() -> None:
    hub = ReadingHub()
    hub.publish("shelf-a", sample("slot-1", 250.0))
    hub.publish("ble", Advertisement("hci0", "AA:BB", -60, 10.0, NOW))
    hub.publish("ble", Advertisement("hci0", "CC:DD", -70, -20.0, NOW))  # 40 s before "now"
    hub.publish("esl", LabelReport("0000AABBCCDDEEFF", LabelReportKind.CONFIRMED, 10.0, NOW))
    hub.publish("esl", Heartbeat(11.0))
    digest = hub.summaries(now_monotonic=20.0)
    assert digest["shelf-a"]["weights"]["slot-1"]["net_grams"] == 250.0
    assert digest["ble"]["beacons_recent"] == 1
    assert digest["ble"]["strongest_rssi"] == -60
    assert digest["esl"] == {"readings": 2, "label_reports": {"confirmed": 1}}


def test_beacon_table_is_bounded() -> None:
    hub = ReadingHub()
    for index in range(1000):
        hub.publish("ble", Advertisement("hci0", f"addr-{index}", -60, float(index), NOW))
    view = hub.view("ble")
    assert view is not None
    assert len(view.beacons) <= 256
    assert hash("addr-999") in view.beacons  # the newest kept, the oldest gone
    assert hash("addr-0") not in view.beacons


def test_the_live_view_keeps_no_address() -> None:
    hub = ReadingHub()
    hub.publish("ble", Advertisement("hci0", "5A:11:22:33:44:55", -60, 1.0, NOW))
    view = hub.view("ble")
    assert view is not None
    assert "5A:11:22:33:44:55" not in repr(view)
    assert hub.summaries(now_monotonic=2.0)["ble"]["beacons_recent"] == 1
