"""The zone tracker on scripted sightings: smoothing, enter/exit hysteresis, the learned
no-sighting timeout and zone switching with a margin and a minimum time."""

from __future__ import annotations

import pytest

from gateway.presence.zone_tracker import PresenceSettings, ZoneChange, ZoneSpec, ZoneTracker

ZONES = [ZoneSpec("a", ("rx-a",), -65.0), ZoneSpec("b", ("rx-b",), -65.0)]


def feed(
    tracker: ZoneTracker,
    tag: str,
    receiver: str,
    rssi: float,
    start: float,
    end: float,
    step: float = 0.5,
) -> list[ZoneChange]:
    changes: list[ZoneChange] = []
    at = start
    while at < end:
        changes += tracker.sight(tag, receiver, rssi, at)
        changes += tracker.tick(at)
        at += step
    return changes


def test_a_tag_enters_after_the_hold_and_the_visit_starts_when_it_arrived() -> None:
    tracker = ZoneTracker(ZONES)
    changes = feed(tracker, "cart-1", "rx-a", -55, 100.0, 110.0)
    # It counts from its second 1 s bin (one bin alone could be a reflection).
    assert [(c.zone, c.entered, c.started) for c in changes] == [("a", True, 101.0)]
    assert tracker.occupancy() == {"a": 1, "b": 0}


def test_a_weak_tag_never_enters() -> None:
    tracker = ZoneTracker(ZONES)
    assert feed(tracker, "cart-1", "rx-a", -75, 0.0, 60.0) == []
    assert tracker.occupancy() == {"a": 0, "b": 0}


def test_silence_ends_the_visit_at_its_last_sighting_after_the_learned_timeout() -> None:
    tracker = ZoneTracker(ZONES)
    feed(tracker, "cart-1", "rx-a", -55, 0.0, 30.0, step=1.0)  # 1 s adverts: timeout 10 s min
    last = 29.0
    exits = [c for at in range(30, 45) for c in tracker.tick(float(at)) if not c.entered]
    assert len(exits) == 1
    assert exits[0].at == last
    assert exits[0].dwell_s == pytest.approx(28.0)  # from its second bin (1 s) to 29 s


def test_the_timeout_grows_with_a_slow_advertiser() -> None:
    tracker = ZoneTracker(ZONES, PresenceSettings(gone_min_s=5.0, gone_max_s=60.0))
    feed(tracker, "slow", "rx-a", -55, 0.0, 40.0, step=8.0)  # an advert every 8 s
    # 3 x 8 s + 5 s = 29 s: still present 20 s after the last advert
    assert tracker.tick(52.0) == []
    exits = [c for c in tracker.tick(75.0) if not c.entered]
    assert len(exits) == 1


def test_a_weakening_tag_leaves_only_below_the_margin_for_the_hold() -> None:
    tracker = ZoneTracker(ZONES)
    feed(tracker, "t", "rx-a", -55, 0.0, 20.0)
    # Just under the threshold but within the 6 dB margin: stays.
    assert [c for c in feed(tracker, "t", "rx-a", -68, 20.0, 40.0) if not c.entered] == []
    exits = [c for c in feed(tracker, "t", "rx-a", -85, 40.0, 60.0) if not c.entered]
    assert len(exits) == 1
    assert exits[0].at < 40.0  # the visit lasted while it was truly inside


def test_one_spike_does_not_move_a_tag() -> None:
    tracker = ZoneTracker(ZONES)
    feed(tracker, "t", "rx-a", -55, 0.0, 20.0)
    changes = tracker.sight("t", "rx-b", -30, 20.2)  # one reflection, once
    changes += feed(tracker, "t", "rx-a", -55, 20.5, 40.0)
    assert [c for c in changes if c.zone == "b"] == []


def test_switching_needs_a_margin_held_for_the_minimum_time() -> None:
    tracker = ZoneTracker(ZONES)
    feed(tracker, "t", "rx-a", -55, 0.0, 20.0)
    # b only slightly better than a: no switch
    changes = []
    for at in [20.0 + i * 0.5 for i in range(40)]:
        changes += tracker.sight("t", "rx-a", -56, at)
        changes += tracker.sight("t", "rx-b", -54, at + 0.1)
        changes += tracker.tick(at)
    assert changes == []
    # b clearly better for long enough: exit a, enter b at the same instant
    for at in [40.0 + i * 0.5 for i in range(40)]:
        changes += tracker.sight("t", "rx-a", -66, at)
        changes += tracker.sight("t", "rx-b", -52, at + 0.1)
        changes += tracker.tick(at)
    assert [(c.zone, c.entered) for c in changes] == [("a", False), ("b", True)]
    assert changes[1].started <= changes[1].at


def test_receivers_of_no_zone_are_ignored() -> None:
    tracker = ZoneTracker(ZONES)
    assert feed(tracker, "t", "rx-elsewhere", -40, 0.0, 20.0) == []
    assert len(tracker) == 0


def test_close_ends_every_open_visit() -> None:
    tracker = ZoneTracker(ZONES)
    feed(tracker, "t1", "rx-a", -55, 0.0, 20.0)
    feed(tracker, "t2", "rx-b", -55, 0.0, 20.0)
    exits = tracker.close()
    assert sorted(c.zone for c in exits) == ["a", "b"]
    assert tracker.occupancy() == {"a": 0, "b": 0}


def test_memory_is_bounded() -> None:
    tracker = ZoneTracker(ZONES, PresenceSettings(max_identities=100))
    for n in range(1000):
        tracker.sight(f"phone-{n}", "rx-a", -90, float(n))
    assert len(tracker) <= 100


@pytest.mark.parametrize(
    "bad",
    [
        {"ema_alpha": 0.0},
        {"ema_alpha": 1.5},
        {"bin_s": 0.0},
        {"gone_min_s": 10.0, "gone_max_s": 5.0},
        {"enter_hold_s": -1.0},
        {"switch_margin_db": -3.0},
        {"max_identities": 0},
    ],
)
def test_nonsense_settings_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PresenceSettings(**bad)  # type: ignore[arg-type]


def test_a_zone_defined_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        ZoneTracker([ZONES[0], ZONES[0]])
