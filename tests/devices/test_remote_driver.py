"""``ble.remote`` against a real mosquitto: simulated receiver nodes publish the storegw format
and ESPresense's; adverts arrive decoded per node; a node's last will and silence are reported
per node while the driver stays up; garbage is counted; the broker going away is the driver's
own failure (retried by the supervisor)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from devices.ble.remote import RemoteReceivers
from devices.simulated.receiver_node import ReceiverNode
from gateway.drivers.contracts import (
    Advertisement,
    BeaconFormat,
    BeaconId,
    Reading,
    ReceiverState,
    ReceiverStatus,
)
from gateway.errors import DriverUnavailableError
from tests.devices.harness import make
from tests.support.broker import Broker
from tests.waiting import patience

IBEACON_AD = bytes.fromhex("0201061aff4c000215e2c56db5dffb48d2b060d0f5a71096e000010002c5")
CART = BeaconId(BeaconFormat.IBEACON, "e2c56db5-dffb-48d2-b060-d0f5a71096e0:1:2")
SPEC_IRK = bytes.fromhex("ec0234a357c8ad05341010a60a397d9b")


def driver(broker: Broker, **options: Any) -> RemoteReceivers:
    made: RemoteReceivers = make(
        "ble.remote", "nodes", host=broker.host, port=broker.port, **options
    )
    return made


async def until(stream: AsyncIterator[Reading], wanted: Any, within: float = 20.0) -> list[Reading]:
    """Readings until one satisfies ``wanted`` (a liveness bound, not a timing assertion)."""
    seen: list[Reading] = []
    async with asyncio.timeout(patience(within)):
        async for reading in stream:
            seen.append(reading)
            if wanted(reading):
                return seen
    raise AssertionError("the stream ended")


async def test_nodes_adverts_arrive_decoded_per_node(mosquitto: Broker) -> None:
    receivers = driver(mosquitto, node_silence_s=60)
    await receivers.open()
    receivers.set_identity_keys({"app-user-1": SPEC_IRK})
    stream = receivers.readings()
    node_a = ReceiverNode(mosquitto.host, mosquitto.port, "node-a")
    try:
        node_a.report(
            [("C3:11:22:33:44:55", -61, IBEACON_AD), ("70:81:94:0D:FB:AA", -70, b"\x02\x01\x06")],
        )
        seen = await until(stream, lambda r: isinstance(r, Advertisement) and r.rssi == -70)
        adverts = [r for r in seen if isinstance(r, Advertisement)]
        cart = next(a for a in adverts if a.rssi == -61)
        assert cart.receiver == "node-a"
        assert cart.beacon == CART
        assert cart.measured_power == -59
        phone = next(a for a in adverts if a.rssi == -70)
        assert phone.enrolled_key == "app-user-1"  # resolved by the spec's sample IRK
        statuses = [r for r in seen if isinstance(r, ReceiverStatus)]
        assert statuses[0].receiver == "node-a"
        assert statuses[0].state is ReceiverState.ONLINE
    finally:
        node_a.close()
        await stream.aclose()  # type: ignore[attr-defined]
        await receivers.close()


async def test_a_node_that_dies_is_offline_and_one_that_goes_quiet_is_quiet(
    mosquitto: Broker,
) -> None:
    receivers = driver(mosquitto, node_silence_s=1)
    await receivers.open()
    stream = receivers.readings()
    node_a = ReceiverNode(mosquitto.host, mosquitto.port, "node-a")
    node_b = ReceiverNode(mosquitto.host, mosquitto.port, "node-b")
    try:
        node_a.report([("C3:11:22:33:44:55", -61, IBEACON_AD)])
        node_b.report([("C3:11:22:33:44:55", -75, IBEACON_AD)])
        node_a.die()  # its last will: offline
        seen = await until(
            stream,
            lambda r: (
                isinstance(r, ReceiverStatus)
                and r.receiver == "node-a"
                and r.state is ReceiverState.OFFLINE
            ),
        )
        seen += await until(
            stream,
            lambda r: (
                isinstance(r, ReceiverStatus)
                and r.receiver == "node-b"
                and r.state is ReceiverState.QUIET
            ),
        )
        assert "not reporting: node-a, node-b" in receivers.status_detail
        node_b.report([("C3:11:22:33:44:55", -74, IBEACON_AD)])
        await until(
            stream,
            lambda r: (
                isinstance(r, ReceiverStatus)
                and r.receiver == "node-b"
                and r.state is ReceiverState.ONLINE
            ),
        )
    finally:
        node_b.close()
        await stream.aclose()  # type: ignore[attr-defined]
        await receivers.close()


async def test_espresense_nodes(mosquitto: Broker) -> None:
    receivers = driver(mosquitto, storegw_prefix=None, espresense_prefix="espresense")
    await receivers.open()
    stream = receivers.readings()
    room = ReceiverNode(
        mosquitto.host,
        mosquitto.port,
        "produce",
        prefix="espresense",
        fmt="espresense",
    )
    try:
        room.espresense_beacon("iBeacon:e2c56db5-dffb-48d2-b060-d0f5a71096e0-1-2", -66)
        seen = await until(stream, lambda r: isinstance(r, Advertisement))
        advert = seen[-1]
        assert isinstance(advert, Advertisement)
        assert advert.receiver == "produce"
        assert advert.beacon == CART
    finally:
        room.close()
        await stream.aclose()  # type: ignore[attr-defined]
        await receivers.close()


async def test_garbage_is_counted_and_the_driver_goes_on(mosquitto: Broker) -> None:
    receivers = driver(mosquitto, nodes={"node-a": "produce"})
    await receivers.open()
    stream = receivers.readings()
    node_a = ReceiverNode(mosquitto.host, mosquitto.port, "node-a")
    stranger = ReceiverNode(mosquitto.host, mosquitto.port, "stranger")
    try:
        for payload in (b"garbage", b"{}", b"[" * 50_000, b'{"v":1,"node":"node-a","adverts":[1]}'):
            node_a.publish("storegw/receivers/node-a/adverts", payload)
        node_a.publish("storegw/receivers/node-a/adverts/x", b"{}")
        stranger.report([("C3:11:22:33:44:55", -50, IBEACON_AD)])
        bad_ad = b"\x05\xff\x4c"  # a length that does not add up
        node_a.report([("C3:11:22:33:44:56", -62, bad_ad)])
        node_a.report([("C3:11:22:33:44:55", -60, IBEACON_AD)])
        seen = await until(stream, lambda r: isinstance(r, Advertisement) and r.rssi == -60)
        adverts = [r for r in seen if isinstance(r, Advertisement)]
        assert [(a.receiver, a.rssi) for a in adverts] == [("produce", -60)]
        assert sum(receivers.garbage.values()) >= 7
        assert "bad message" in receivers.status_detail
    finally:
        node_a.close()
        stranger.close()
        await stream.aclose()  # type: ignore[attr-defined]
        await receivers.close()


async def test_no_broker_is_a_clear_retryable_failure(mosquitto: Broker) -> None:
    port = mosquitto.port
    mosquitto.stop()
    receivers = make("ble.remote", "nodes", host="127.0.0.1", port=port)
    with pytest.raises(DriverUnavailableError, match=f"127.0.0.1:{port} unreachable"):
        await receivers.open()
    await receivers.close()


@pytest.mark.slow  # a broker killed and started again
async def test_the_broker_going_away_fails_the_driver_for_a_restart(mosquitto: Broker) -> None:
    receivers = driver(mosquitto)
    await receivers.open()
    stream = receivers.readings()
    try:
        mosquitto.kill()
        with pytest.raises(DriverUnavailableError, match="lost"):
            await until(stream, lambda _r: False, within=30)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
        await receivers.close()
    mosquitto.start()
    again = driver(mosquitto)
    await again.open()  # the supervisor's next start works
    await again.close()
