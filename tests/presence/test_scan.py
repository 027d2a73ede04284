"""``ble.scan``: what receivers hear, decoded; names for the store's own beacons and tags,
beacon ids for other beacons, pseudonyms for every other device — never an address."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from gateway.drivers.contracts import Advertisement, BeaconTelemetry
from gateway.hub import ReadingHub
from gateway.presence.identity import Pseudonyms
from gateway.presence.scan import MAX_SCAN_S, ScanSession, scan
from tests.presence.support import MARKER, PHONE, cart

AT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def advert(receiver: str, address: str, rssi: int, **fields: object) -> Advertisement:
    return Advertisement(receiver, address, rssi, 1.0, AT, **fields)  # type: ignore[arg-type]


def session() -> ScanSession:
    return ScanSession(
        tags={str(cart(1)): "cart-1"},
        fixed={str(MARKER): "door"},
        key_names=frozenset({"app-user-1"}),
        pseudonyms=Pseudonyms("Europe/Berlin"),
    )


async def test_what_was_heard_is_named_decoded_and_pseudonymised() -> None:
    hub = ReadingHub()
    waited: list[float] = []

    async def hear(seconds: float) -> None:
        waited.append(seconds)
        hub.publish(
            "ble", advert("rx-a", "C1:00:00:00:00:01", -50, beacon=cart(1), measured_power=-59)
        )
        hub.publish("ble", advert("rx-a", "C1:00:00:00:00:01", -54, beacon=cart(1)))
        hub.publish("ble", advert("rx-b", "C2:00:00:00:00:02", -70, beacon=MARKER))
        tlm = BeaconTelemetry(battery_mv=2900, temperature_c=21.5)
        hub.publish("ble", advert("rx-b", "C2:00:00:00:00:02", -71, telemetry=tlm))
        hub.publish("ble", advert("rx-a", "C3:00:00:00:00:03", -80, beacon=cart(9)))
        hub.publish("ble", advert("rx-a", PHONE, -65))
        hub.publish("ble", advert("rx-a", "7A:00:00:00:00:07", -66, enrolled_key="app-user-1"))

    result = await scan(hub, session(), 3, wait=hear)
    assert waited == [3]
    rows = {(r["receiver"], r["who"]): r for r in result["heard"]}
    assert rows["rx-a", "cart-1"]["adverts"] == 2
    assert rows["rx-a", "cart-1"]["rssi_max"] == -50
    assert rows["rx-a", "cart-1"]["measured_power"] == -59
    assert rows["rx-b", "door"]["battery_mv"] == 2900  # its TLM frames joined by address
    assert rows["rx-b", "door"]["adverts"] == 2
    assert rows["rx-a", str(cart(9))]["kind"] == "beacon (not enrolled)"
    assert rows["rx-a", "app-user-1"]["kind"] == "enrolled device"
    devices = [r for r in result["heard"] if r["kind"] == "device"]
    assert len(devices) == 1
    assert devices[0]["who"].startswith("anon-")
    assert "00:0" not in json.dumps(result)  # no address at all
    assert PHONE not in json.dumps(result)


async def test_the_listening_time_is_bounded_and_the_listener_removed() -> None:
    hub = ReadingHub()
    waited: list[float] = []

    async def wait(seconds: float) -> None:
        waited.append(seconds)

    result = await scan(hub, session(), 10_000, wait=wait)
    assert waited == [MAX_SCAN_S]
    assert result["heard"] == []
    hub.publish("ble", advert("rx-a", PHONE, -60))  # after the scan: nobody listens
    assert result["adverts"] == 0
