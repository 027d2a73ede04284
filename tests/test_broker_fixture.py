"""The suite's own mosquitto: a real broker on a free port, used with paho as the gateway will."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import Broker


def test_real_broker_round_trip(mosquitto: Broker) -> None:
    assert mosquitto.port != 1883  # never the machine's own broker
    received: list[bytes] = []
    subscribed = threading.Event()
    arrived = threading.Event()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)

    def on_connect(c: mqtt.Client, *_: object) -> None:
        c.subscribe("retail/v1/test/#", qos=1)

    def on_subscribe(*_: object) -> None:
        subscribed.set()

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        received.append(message.payload)
        arrived.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    try:
        assert subscribed.wait(10)
        client.publish("retail/v1/test/up/health", b'{"ok":true}', qos=1).wait_for_publish(10)
        assert arrived.wait(10)
    finally:
        client.disconnect()
        client.loop_stop()
    assert received == [b'{"ok":true}']
