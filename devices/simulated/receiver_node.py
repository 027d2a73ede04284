"""A simulated BLE receiver node: publishes what it "hears" to an MQTT broker in the storegw
format (or ESPresense's), with a retained online status and an offline last will, as node
firmware does. For tests and demos of ``ble.remote``; a small working publisher, not a mock."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from typing import Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

__all__ = ["ReceiverNode"]


class ReceiverNode:
    def __init__(
        self,
        host: str,
        port: int,
        node: str,
        *,
        prefix: str = "storegw/receivers",
        fmt: Literal["storegw", "espresense"] = "storegw",
    ) -> None:
        self.node, self.prefix, self.fmt = node, prefix.rstrip("/"), fmt
        self.seq = 0
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"node-{node}", protocol=mqtt.MQTTv5
        )
        self._client.will_set(self._status_topic, b"offline", qos=1, retain=True)
        connected = threading.Event()
        self._client.on_connect = lambda *_: connected.set()
        self._client.connect(host, port)
        self._client.loop_start()
        if not connected.wait(10):
            raise ConnectionError(f"receiver node {node}: no CONNACK from {host}:{port}")
        self.publish(self._status_topic, b"online", retain=True)

    @property
    def _status_topic(self) -> str:
        if self.fmt == "espresense":
            return f"{self.prefix}/rooms/{self.node}/status"
        return f"{self.prefix}/{self.node}/status"

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self._client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def report(self, adverts: Iterable[tuple[str, int, bytes]]) -> None:
        """What the node heard: (address, rssi, raw advertising data) each."""
        items = list(adverts)
        if self.fmt == "espresense":
            for address, rssi, _data in items:
                body = {"id": "mac:" + address.replace(":", "").lower(), "rssi": rssi}
                body["mac"] = address.replace(":", "").lower()
                self.publish(
                    f"{self.prefix}/devices/{body['id']}/{self.node}", json.dumps(body).encode()
                )
            return
        self.seq += 1
        body = {
            "v": 1,
            "node": self.node,
            "seq": self.seq,
            "adverts": [{"addr": a, "rssi": r, "ad": d.hex()} for a, r, d in items],
        }
        self.publish(f"{self.prefix}/{self.node}/adverts", json.dumps(body).encode())

    def espresense_beacon(self, ident: str, rssi: int, rssi_1m: int = -59) -> None:
        """An ESPresense device report for ``ident`` (e.g. ``iBeacon:<uuid>-<major>-<minor>``)."""
        body = {"id": ident, "rssi": rssi, "rssi@1m": rssi_1m}
        self.publish(f"{self.prefix}/devices/{ident}/{self.node}", json.dumps(body).encode())

    def close(self) -> None:
        """A clean goodbye: offline status, then disconnect."""
        self.publish(self._status_topic, b"offline", retain=True)
        self._client.disconnect()
        self._client.loop_stop()

    def die(self) -> None:
        """Gone without a goodbye: the broker sends the last will (offline)."""
        # MQTT 5 reason code 4: "disconnect with will message".
        self._client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=4))
        self._client.loop_stop()
