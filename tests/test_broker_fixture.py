"""The suite's own mosquitto: a real broker on a free port, used with paho as the gateway will."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.broker import Broker
from tests.waiting import patience, wait_until


def test_real_broker_round_trip(mosquitto: Broker) -> None:
    assert mosquitto.port != 1883  # never the machine's own broker
    received: list[bytes] = []
    subscribed = threading.Event()
    arrived = threading.Event()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="observer", protocol=mqtt.MQTTv5)

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
    assert not mosquitto.subscribed("retail/v1/test/#")
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    try:
        assert subscribed.wait(patience(10))
        # the broker's own word that the SUBSCRIBE landed: what tests wait for before publishing
        wait_until(lambda: mosquitto.subscribed("retail/v1/test/#", "observer"), within=10)
        assert not mosquitto.subscribed("retail/v1/test/#", "someone-else")
        client.publish("retail/v1/test/up/health", b'{"ok":true}', qos=1).wait_for_publish(
            patience(10)
        )
        assert arrived.wait(patience(10))
    finally:
        client.disconnect()
        client.loop_stop()
    assert received == [b'{"ok":true}']
