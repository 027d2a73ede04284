"""The technician's presence views: zones, beacons and a BLE scan, including empty and odd
answers (a daemon with presence off, nothing heard, unknown states)."""

from __future__ import annotations

from gateway.cli.presence_views import render_beacons, render_scan, render_zones


def test_zones_flag_a_receiver_never_heard() -> None:
    text = render_zones(
        {
            "enabled": True,
            "zones": [
                {
                    "zone": "produce",
                    "occupancy": 3,
                    "longest_dwell_now_s": 75.2,
                    "receivers": ["rx-a"],
                    "receivers_unheard": [],
                },
                {
                    "zone": "dairy",
                    "occupancy": 0,
                    "longest_dwell_now_s": None,
                    "receivers": ["rx-bb"],
                    "receivers_unheard": ["rx-bb"],
                },
            ],
            "tracked": 7,
            "adverts": 1234,
            "visits_reported": 9,
        }
    )
    assert "produce" in text
    assert "75 s" in text
    assert "NEVER HEARD: rx-bb" in text
    assert "tracking 7" in text


def test_presence_off_says_so() -> None:
    assert "presence is off" in render_zones({"enabled": False, "zones": []})
    assert "presence is off" in render_beacons({"enabled": False, "beacons": []})
    assert "no fixed beacons" in render_beacons({"enabled": True, "beacons": []})


def test_beacons_list_problems_first() -> None:
    text = render_beacons(
        {
            "enabled": True,
            "beacons": [
                {
                    "name": "a-ok",
                    "state": "ok",
                    "seconds_ago": 2.0,
                    "battery_mv": 3000,
                    "temperature_c": 20.0,
                    "receiver": "rx-a",
                    "rssi": -60,
                },
                {
                    "name": "z-gone",
                    "state": "missing",
                    "seconds_ago": None,
                    "battery_mv": None,
                    "temperature_c": None,
                    "receiver": None,
                    "rssi": None,
                },
                {
                    "name": "m-low",
                    "state": "battery low",
                    "seconds_ago": 1.0,
                    "battery_mv": 2100,
                    "temperature_c": None,
                    "receiver": "rx-b",
                    "rssi": -80,
                },
                {"name": "weird", "state": "???"},
            ],
        }
    )
    order = [line.split()[0] for line in text.splitlines()[1:]]
    assert order == ["z-gone", "m-low", "a-ok", "weird"]
    assert "never" in text
    assert "2100 mV" in text


def test_a_scan_with_nothing_heard_tells_where_to_look() -> None:
    assert "nothing heard in 5 s" in render_scan({"seconds": 5, "heard": []})


def test_a_scan_lists_each_sender() -> None:
    text = render_scan(
        {
            "seconds": 2,
            "adverts": 40,
            "senders_dropped": 3,
            "heard": [
                {
                    "receiver": "rx-a",
                    "who": "cart-1",
                    "kind": "tag",
                    "adverts": 30,
                    "rssi_max": -50,
                    "rssi_median": -55.5,
                    "measured_power": -59,
                    "battery_mv": None,
                    "temperature_c": None,
                },
                {
                    "receiver": "rx-a",
                    "who": "anon-0123456789abcdef",
                    "kind": "device",
                    "adverts": 10,
                    "rssi_max": -70,
                    "rssi_median": -72.0,
                    "measured_power": None,
                    "battery_mv": None,
                    "temperature_c": None,
                },
            ],
        }
    )
    assert "cart-1" in text
    assert "-59 dBm @1m" in text
    assert "anon-0123456789abcdef" in text
    assert "3 adverts from further senders" in text
