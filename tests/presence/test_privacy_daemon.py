"""Privacy end to end: the real daemon with simulated shoppers' phones and enrolled carts, its
own broker and a subscriber recording every message. No phone address — in any spelling —
appears in the database files, the daemon's logs, the broker traffic or what the technician's
``storegw zones`` and ``storegw ble scan`` show, while presence did
track the phones (counted) and the carts (by name)."""

from __future__ import annotations

import json
import signal
import threading
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devices.ble.advertising import is_resolvable_private
from gateway.drivers.contracts import Advertisement
from tests.daemon import (
    FollowedOutput,
    run_cli,
    running_daemon,
    short_dir,
    wait_for,
    write_config,
)
from tests.devices.harness import make, take
from tests.support.broker import Broker
from tests.waiting import patience

STORE = "privacy-store"
BEACON_OPTIONS: dict[str, Any] = {
    "seed": 11,
    "receiver": "hci0",
    "zone": "produce",
    "carts": 2,
    "cart_interval_s": 0.2,
    "cart_move_interval_s": 3600,
    "phones": 4,
    "phone_interval_s": 0.2,
    "rssi_noise_db": 2.0,
}


async def phone_addresses() -> set[str]:
    """The addresses the simulated phones use (the simulator is deterministic: same seed and
    instance name, same addresses; they rotate only after ~15 minutes)."""
    driver = make("simulated.beacon", "ble", **BEACON_OPTIONS)
    adverts: list[Advertisement] = await take(driver.readings(), 400, Advertisement, within=30)
    return {a.address for a in adverts if is_resolvable_private(a.address)}


def spellings(address: str) -> set[str]:
    bare = address.replace(":", "")
    return {address.upper(), address.lower(), bare.upper(), bare.lower(), address.replace(":", "-")}


class Recorder:
    def __init__(self, broker: Broker) -> None:
        self.payloads: list[bytes] = []
        ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, *_: c.subscribe("#", qos=1)
        self.client.on_subscribe = lambda *_: ready.set()
        self.client.on_message = lambda _c, _u, m: self.payloads.append(
            m.topic.encode() + m.payload
        )
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert ready.wait(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.slow  # the daemon as a subprocess for half a minute of shoppers
async def test_no_raw_address_is_stored_logged_or_published(mosquitto: Broker) -> None:
    phones = await phone_addresses()
    assert len(phones) == 4
    recorder = Recorder(mosquitto)
    try:
        with short_dir() as state:
            config = write_config(
                state / "gateway.toml",
                state_dir=state,
                devices=[{"name": "ble", "driver": "simulated.beacon", "options": BEACON_OPTIONS}],
                store_id=STORE,
                extra=(
                    "[logging]\nlevel = 'DEBUG'\n"
                    "[presence]\naggregate_interval_s = 10\nmin_visit_s = 3\n"
                    "[[presence.zones]]\nname = 'produce'\nreceivers = ['hci0']\n"
                    "enter_rssi = -75\n"
                    "[[presence.tags]]\nname = 'cart-0'\n"
                    "beacon = 'ibeacon:5f0c1a2e-8d7b-4c4e-9a61-3f2b7d9e0c11:100:0'\n"
                ),
            )
            text = config.read_text(encoding="utf-8").replace(
                "[mqtt]\n", f"[mqtt]\nhost = '{mosquitto.host}'\nport = {mosquitto.port}\n"
            )
            config.write_text(text, encoding="utf-8")
            socket = str(state / "control.sock")
            with running_daemon(config, notify_dir=state, wait_ready=False) as (process, ready):
                followed = FollowedOutput(process)  # DEBUG logs: read as they come
                ready.wait_for("READY=1")

                def zones() -> dict[str, Any] | None:
                    result = run_cli("zones", "--json", "--socket", socket)
                    view: dict[str, Any] = json.loads(result.stdout)
                    return view if view["tracked"] >= 3 and view["visits_reported"] >= 0 else None

                wait_for(zones, what="presence tracking carts and phones")
                wait_for(
                    lambda: any(b'"zone.aggregate"' in p for p in recorder.payloads),
                    what="a zone aggregate at the broker",
                )
                text_view = run_cli("zones", "--socket", socket).stdout
                assert "produce" in text_view
                scanned = run_cli("ble", "scan", "--seconds", "2", "--json", "--socket", socket)
                heard = json.loads(scanned.stdout)["heard"]
                assert {row["kind"] for row in heard} >= {"tag", "device"}
                output_of_cli = (
                    text_view
                    + scanned.stdout
                    + run_cli("ble", "scan", "--seconds", "1", "--socket", socket).stdout
                )
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=patience(30))
                output = followed.finish()
            stored = b"".join(path.read_bytes() for path in state.iterdir() if path.is_file())
    finally:
        recorder.close()
    traffic = b"\n".join(recorder.payloads)
    assert b"zone.aggregate" in traffic
    for address in phones:
        for spelling in spellings(address):
            assert spelling not in output, f"{spelling} in the daemon's logs"
            assert spelling not in output_of_cli, f"{spelling} shown by the CLI"
            assert spelling.encode() not in stored, f"{spelling} in the state directory"
            assert spelling.encode() not in traffic, f"{spelling} at the broker"
