"""A small working HQ for tests: stores envelopes de-duplicated, acks contiguous watermarks."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.broker import Broker
from tests.waiting import patience


class FakeHq:
    def __init__(self, broker: Broker, *, ack: bool = True, ack_delay_s: float = 0.0) -> None:
        self.ack = ack
        self.ack_delay_s = ack_delay_s  # an HQ that takes a while to commit before it acks
        self.lock = threading.Lock()
        self.events: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
        self.envelopes = 0
        self.duplicates = 0
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="fake-hq", protocol=mqtt.MQTTv5
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self.subscribed.wait(patience(10))

    def _on_connect(self, client: mqtt.Client, *_: object) -> None:
        client.subscribe("retail/v1/+/up/#", qos=1)

    def _on_message(self, client: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        if message.topic.endswith("/up/health"):
            return
        envelope = json.loads(message.payload)
        key = (envelope["stream"], envelope["epoch"])
        with self.lock:
            self.envelopes += 1
            stored = self.events.setdefault(key, {})
            for event in envelope["events"]:
                if event["seq"] in stored:
                    self.duplicates += 1
                stored[event["seq"]] = event
            watermark = 0
            while watermark + 1 in stored:
                watermark += 1
        if self.ack and watermark:
            if self.ack_delay_s:
                time.sleep(self.ack_delay_s)  # paho's network thread: later messages wait too
            store = envelope["store"]
            ack = {"stream": envelope["stream"], "epoch": envelope["epoch"], "seq": watermark}
            client.publish(f"retail/v1/{store}/down/ack", json.dumps(ack), qos=1)

    def seqs(self, stream: str, epoch: str) -> list[int]:
        with self.lock:
            return sorted(self.events.get((stream, epoch), {}))

    def publish_raw(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(patience(5))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
