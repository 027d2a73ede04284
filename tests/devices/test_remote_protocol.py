"""Remote receiver nodes' messages: the storegw format and ESPresense's, and garbage."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.ble.remote_protocol import (
    MAX_PAYLOAD,
    NodeReport,
    NodeStatus,
    parse_espresense,
    parse_storegw,
)
from gateway.drivers.contracts import BeaconFormat, BeaconId

PREFIX = "storegw/receivers"
IBEACON_AD = bytes.fromhex("0201061aff4c000215e2c56db5dffb48d2b060d0f5a71096e000010002c5")


def adverts(*items: dict[str, object], node: str = "node-a", seq: int = 3) -> bytes:
    return json.dumps({"v": 1, "node": node, "seq": seq, "adverts": list(items)}).encode()


def test_a_storegw_report() -> None:
    report = parse_storegw(
        f"{PREFIX}/node-a/adverts",
        adverts({"addr": "c3-11-22-33-44-55", "rssi": -67, "ad": IBEACON_AD.hex()}),
        PREFIX,
    )
    assert isinstance(report, NodeReport)
    assert report.node == "node-a"
    assert report.seq == 3
    (advert,) = report.adverts
    assert advert.address == "C3:11:22:33:44:55"
    assert advert.rssi == -67
    assert advert.advertising_data == IBEACON_AD


@pytest.mark.parametrize("payload", [b"online", b" ONLINE\n", b"offline"])
def test_node_status(payload: bytes) -> None:
    status = parse_storegw(f"{PREFIX}/node-a/status", payload, PREFIX)
    assert isinstance(status, NodeStatus)
    assert status.state == payload.strip().lower().decode()


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        (f"{PREFIX}/node-a/adverts", b"not json"),
        (f"{PREFIX}/node-a/adverts", b"[]"),
        (f"{PREFIX}/node-a/adverts", adverts(node="node-b")),  # node differs from the topic's
        (
            f"{PREFIX}/node-a/adverts",
            json.dumps({"v": 2, "node": "node-a", "adverts": []}).encode(),
        ),
        (f"{PREFIX}/node-a/adverts", adverts({"addr": "zz", "rssi": -60, "ad": ""})),
        (f"{PREFIX}/node-a/adverts", adverts({"addr": "C3:11:22:33:44:55", "rssi": 5, "ad": ""})),
        (
            f"{PREFIX}/node-a/adverts",
            adverts({"addr": "C3:11:22:33:44:55", "rssi": True, "ad": ""}),
        ),
        (
            f"{PREFIX}/node-a/adverts",
            adverts({"addr": "C3:11:22:33:44:55", "rssi": -60, "ad": "abc"}),
        ),
        (
            f"{PREFIX}/node-a/adverts",
            adverts({"addr": "C3:11:22:33:44:55", "rssi": -60, "ad": "zz"}),
        ),
        (
            f"{PREFIX}/node-a/adverts",
            adverts({"addr": "C3:11:22:33:44:55", "rssi": -60, "ad": "00" * 2000}),
        ),
        (f"{PREFIX}/node-a/adverts", adverts(seq=-1)),
        (f"{PREFIX}/node-a/adverts", b'{"v": 1, "node": "node-a", "adverts": [], "seq": NaN}'),
        (f"{PREFIX}/node-a/adverts", b"[" * 100_000),
        (f"{PREFIX}/node-a/adverts", b" " * (MAX_PAYLOAD + 1)),
        (f"{PREFIX}/node-a/extra/adverts", adverts()),
        (f"{PREFIX}/+/adverts", adverts()),
        (f"{PREFIX}/node-a/other", adverts()),
        (f"{PREFIX}/node-a/status", b"maybe"),
        ("elsewhere/node-a/adverts", adverts()),
    ],
)
def test_garbage_is_not_a_report(topic: str, payload: bytes) -> None:
    assert parse_storegw(topic, payload, PREFIX) is None


def test_an_espresense_ibeacon_gets_the_frames_beacon_id() -> None:
    report = parse_espresense(
        "espresense/devices/iBeacon:E2C56DB5-DFFB-48D2-B060-D0F5A71096E0-1-2/produce",
        json.dumps(
            {"id": "iBeacon:E2C56DB5-DFFB-48D2-B060-D0F5A71096E0-1-2", "rssi": -71, "rssi@1m": -59}
        ).encode(),
    )
    assert isinstance(report, NodeReport)
    assert report.node == "produce"
    (advert,) = report.adverts
    assert advert.beacon == BeaconId(
        BeaconFormat.IBEACON, "e2c56db5-dffb-48d2-b060-d0f5a71096e0:1:2"
    )
    assert advert.measured_power == -59


def test_an_espresense_device_with_a_mac() -> None:
    report = parse_espresense(
        "espresense/devices/apple:1005:9-26/dairy",
        json.dumps({"id": "apple:1005:9-26", "rssi": -80.4, "mac": "5a1122334455"}).encode(),
    )
    assert isinstance(report, NodeReport)
    assert report.adverts[0].address == "5A:11:22:33:44:55"
    assert report.adverts[0].beacon is None
    assert report.adverts[0].rssi == -80


def test_an_espresense_room_status() -> None:
    assert parse_espresense("espresense/rooms/dairy/status", b"offline") == NodeStatus(
        "dairy", "offline"
    )


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("espresense/devices/x/produce", b"{}"),
        ("espresense/devices/x/produce", b'{"id": "x", "rssi": "loud"}'),
        ("espresense/devices/x/produce", b'{"id": "", "rssi": -60}'),
        (
            "espresense/devices/x/produce",
            b'{"id": "iBeacon:e2c56db5-dffb-48d2-b060-d0f5a71096e0-99999-1", "rssi": -60}',
        ),
        ("espresense/devices/x", b'{"id": "x", "rssi": -60}'),
        ("espresense/devices/x/a/b", b'{"id": "x", "rssi": -60}'),
        ("espresense/rooms/dairy/status", b"{}"),
        ("espresense/settings/x/y", b"{}"),
    ],
)
def test_espresense_garbage_is_not_a_report(topic: str, payload: bytes) -> None:
    assert parse_espresense(topic, payload) is None


@given(st.text(max_size=80), st.binary(max_size=400))
def test_nothing_raises(topic: str, payload: bytes) -> None:
    parse_storegw(topic, payload, PREFIX)
    parse_espresense(topic, payload)
