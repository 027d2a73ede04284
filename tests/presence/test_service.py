"""The presence service on real SQLite: enrolled carts' visits go up one by one, everyone is
counted in the aggregates, phones only ever as pseudonyms, fixed beacons' health as alerts."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from gateway.drivers.contracts import BeaconTelemetry
from tests.presence.support import MARKER, PHONE, cart, floor
from tests.wire.documented import sent_events


def _of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [event for event in events if event["type"] == kind]


async def test_an_enrolled_cart_visit_goes_up_as_enter_and_exit_with_its_dwell(
    tmp_path: Path,
) -> None:
    async with floor(tmp_path) as f:
        await f.stay(60, ("rx-a", -55, {"beacon": cart(1)}))
        await f.stay(60)  # gone: the exit waits out the merge gap
        events = await sent_events(f.outbox)
    (enter,) = _of(events, "zone.enter")
    (exit_,) = _of(events, "zone.exit")
    assert enter["tag"] == exit_["tag"] == "cart-1"
    assert enter["zone"] == exit_["zone"] == "produce"
    assert 57 <= exit_["dwell_s"] <= 60
    aggregates = _of(events, "zone.aggregate")
    produce = [a for a in aggregates if a["zone"] == "produce"]
    assert sum(a["visits"] for a in produce) == 1
    assert max(a["peak_occupancy"] for a in produce) == 1


async def test_a_phone_is_counted_but_never_named_nor_stored(tmp_path: Path) -> None:
    async with floor(tmp_path) as f:
        await f.stay(40, ("rx-b", -58, {"address": PHONE}))
        await f.stay(90)  # the visit ends, then its aggregate interval does
        events = await sent_events(f.outbox)
        db_path = f.database.path
    assert _of(events, "zone.enter") == _of(events, "zone.exit") == []
    dairy = [a for a in _of(events, "zone.aggregate") if a["zone"] == "dairy"]
    assert sum(a["visits"] for a in dairy) == 1
    wire = json.dumps(events)
    assert PHONE not in wire
    assert PHONE.replace(":", "") not in wire
    assert "anon-" not in wire  # not even its pseudonym goes up
    dump = "\n".join(sqlite3.connect(db_path).iterdump())
    for form in (PHONE, PHONE.lower(), PHONE.replace(":", ""), PHONE.replace(":", "").lower()):
        assert form not in dump


async def test_without_counting_anonymous_devices_phones_are_dropped(tmp_path: Path) -> None:
    async with floor(tmp_path, count_anonymous=False) as f:
        await f.stay(40, ("rx-b", -58, {"address": PHONE}))
        assert f.service.zones_view()["tracked"] == 0


async def test_a_quiet_fixed_beacon_and_a_low_battery_raise_and_clear_alerts(
    tmp_path: Path,
) -> None:
    async with floor(tmp_path) as f:
        uid = {"beacon": MARKER, "address": "C2:00:00:00:00:02"}
        tlm = {
            "address": "C2:00:00:00:00:02",
            "telemetry": BeaconTelemetry(battery_mv=2300, temperature_c=19.5),
        }
        await f.stay(5, ("rx-a", -70, uid), ("rx-a", -70, tlm))
        keys = {alert.key for alert in f.alerts.active()}
        assert keys == {"beacon.battery_low:door"}
        (listing,) = f.service.beacons_view()["beacons"]
        assert listing["battery_mv"] == 2300
        assert listing["temperature_c"] == 19.5
        assert listing["receiver"] == "rx-a"
        await f.stay(70)  # unheard past missing_after_s
        keys = {alert.key for alert in f.alerts.active()}
        assert keys == {"beacon.battery_low:door", "beacon.missing:door"}
        await f.stay(2, ("rx-a", -70, uid))
        assert {alert.key for alert in f.alerts.active()} == {"beacon.battery_low:door"}
        assert f.service.zones_view()["tracked"] == 0  # a fixed beacon is not a shopper


async def test_identity_keys_reach_every_beacon_driver_again_after_a_restart(
    tmp_path: Path,
) -> None:
    class Receiver:
        def __init__(self) -> None:
            self.keys: dict[str, bytes] | None = None

        def set_identity_keys(self, keys: dict[str, bytes]) -> None:
            self.keys = keys

    irk = "ec0234a357c8ad05341010a60a397d9b"
    async with floor(tmp_path, identity_keys=[{"name": "app-user-1", "irk": irk}]) as f:
        first = f.drivers["ble"] = Receiver()
        await f.service.tick()
        assert first.keys == {"app-user-1": bytes.fromhex(irk)}
        second = f.drivers["ble"] = Receiver()  # the supervisor restarted the driver
        await f.service.tick()
        assert second.keys == {"app-user-1": bytes.fromhex(irk)}
        await f.stay(40, ("rx-a", -55, {"address": PHONE, "enrolled_key": "app-user-1"}))
        await f.stay(60)
        events = await sent_events(f.outbox)
    assert [e["tag"] for e in _of(events, "zone.exit")] == ["app-user-1"]


async def test_stopping_reports_the_visits_in_progress(tmp_path: Path) -> None:
    async with floor(tmp_path) as f:
        await f.stay(30, ("rx-a", -55, {"beacon": cart(1)}))
        await f.service.stop()
        events = await sent_events(f.outbox)
    (exit_,) = _of(events, "zone.exit")
    assert 27 <= exit_["dwell_s"] <= 30


async def test_a_misspelt_receiver_shows_as_unheard(tmp_path: Path) -> None:
    async with floor(tmp_path) as f:
        await f.stay(2, ("rx-a", -55, {"beacon": cart(1)}))
        zones = {z["zone"]: z for z in f.service.zones_view()["zones"]}
    assert zones["produce"]["receivers_unheard"] == []
    assert zones["dairy"]["receivers_unheard"] == ["rx-b"]
