"""Item A: garbage on every ``down/`` topic never cuts a running store off from HQ.

The real daemon (``storegw run``) against a real mosquitto, HQ played by a plain paho client:
25 malformed messages on each of ``down/ack``, ``down/prices`` and ``down/cmd/ping`` — more
than the 20 messages mosquitto keeps in flight to a client that does not acknowledge them —
then a valid ack, price batch and command must all flow, every refusal must be counted where
a technician looks (``storegw status``, ``storegw alerts``), and a restart must neither
redeliver the garbage nor forget the count.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.clock import isoformat_utc
from gateway.hq.prices import build_price_messages
from gateway.sync.signing import Signer, encode_public_key
from tests.daemon import run_cli, running_daemon, short_dir, status_json, wait_for, write_config
from tests.support.broker import Broker

STORE = "test-store"
ROOT = f"retail/v1/{STORE}/"
KEY = Ed25519PrivateKey.generate()
SIGNER = Signer("hq-1", KEY)
WAIT_S = 90.0  # generous: the suite runs on busy machines


def ack(seq: bytes, stream: bytes = b'"stock"') -> bytes:
    return b'{"stream":' + stream + b',"epoch":"e","seq":' + seq + b"}"


def deep_objects(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def deep_arrays(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# 20 of them used to raise in the down/ack handler (RecursionError, OverflowError), the deep ones
# in the down/cmd one too: mosquitto keeps 20 in flight, so the old code stopped receiving.
GARBAGE = [
    deep_objects(100_000),
    deep_arrays(500_000),
    deep_arrays(1_000_000),  # huge too: 2 MB
    deep_objects(3_000),
    deep_arrays(3_000),
    b"[" * 200_000,  # deep and never closed
    b'{"a":' * 100_000,
    b'[{"a":' * 50_000 + b"1" + b"}]" * 50_000,
    ack(deep_arrays(10_000)),
    ack(b"0", stream=deep_arrays(10_000)),
    ack(b"Infinity"),
    ack(b"-Infinity"),
    ack(b"1e400"),
    ack(b"-1e400"),
    ack(b"1e999"),
    ack(b"1E400"),
    ack(b"1e+400"),
    ack(b"2e308"),
    ack(b"Infinity", stream=b'"alerts"'),
    ack(b"1e400", stream=b'"receipts"'),
    SIGNER.wrap(deep_objects(1_000)),  # signed, deep inside
    ack(b"NaN"),
    b"",
    b"\x00\x01\xff\xfe" + bytes(range(256)),  # binary, invalid UTF-8
    b'{"stream":5,"epoch":["e"],"seq":true}',  # wrong types
]
DOWN_TOPICS = ("down/ack", "down/prices", "down/cmd/ping")


class FakeHq:
    """HQ as seen from the store: publishes on ``down/``, collects what comes ``up/``."""

    def __init__(self, broker: Broker) -> None:
        self.messages: list[tuple[str, bytes, bytes | None]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, *_: c.subscribe(ROOT + "#", qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self._subscribed.wait(10)

    def _on_message(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        correlation = getattr(message.properties, "CorrelationData", None)
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload), correlation))

    def received(self, suffix: str) -> list[tuple[bytes, bytes | None]]:
        with self._lock:
            return [(p, c) for t, p, c in self.messages if t == ROOT + suffix]

    def publish(self, suffix: str, payload: bytes, properties: Properties | None = None) -> None:
        self.client.publish(ROOT + suffix, payload, qos=1, properties=properties).wait_for_publish(
            10
        )

    def command(self, name: str, reply_token: str) -> None:
        now = datetime.now(UTC)
        payload = {
            "v": 1,
            "type": "command",
            "id": f"c-{reply_token}",
            "name": name,
            "args": {},
            "scope": {"stores": [STORE]},
            "issued_at": isoformat_utc(now),
            "valid_until": isoformat_utc(now + timedelta(minutes=5)),
        }
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.ResponseTopic = f"{ROOT}up/reply/{reply_token}"
        properties.CorrelationData = reply_token.encode()
        self.publish(f"down/cmd/{name}", json.dumps(payload).encode(), properties)

    def reply(self, token: str) -> dict[str, Any] | None:
        for payload, _ in self.received(f"up/reply/{token}"):
            parsed: dict[str, Any] = json.loads(payload)
            return parsed
        return None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def store_config(broker: Broker) -> Iterator[tuple[Path, Path]]:
    with short_dir() as state:
        config = write_config(
            state / "gateway.toml",
            state_dir=state,
            devices=[],
            store_id=STORE,
            extra=(
                "[downlink]\n"
                f'hq_public_keys = {{ "hq-1" = "{encode_public_key(KEY.public_key())}" }}\n'
                "[logging]\nlevel = 'WARNING'\n"
            ),
        )
        text = config.read_text(encoding="utf-8").replace(
            "[mqtt]\n", f"[mqtt]\nhost = '{broker.host}'\nport = {broker.port}\n"
        )
        config.write_text(text, encoding="utf-8")
        yield config, state


def refusals(status: dict[str, Any]) -> int:
    malformed = status["mqtt"]["malformed"] or {}
    return int(
        (malformed.get("refused") or 0)
        + status["downlink"]["refused"]
        + status["commands"]["refused"]
    )


@pytest.mark.slow  # the daemon as a subprocess, restarted
def test_garbage_on_every_down_topic_never_cuts_the_store_off(mosquitto: Broker) -> None:
    hq = FakeHq(mosquitto)
    try:
        with store_config(mosquitto) as (config, state):
            socket = str(state / "control.sock")
            with running_daemon(config, notify_dir=state):
                # The birth follows the SUBSCRIBEs on the same connection: once HQ sees it,
                # the store is subscribed.
                wait_for(lambda: hq.received("state"), WAIT_S, "the store's birth")
                for topic in DOWN_TOPICS:
                    for payload in GARBAGE:
                        hq.publish(topic, payload)
                total = len(DOWN_TOPICS) * len(GARBAGE)
                wait_for(
                    lambda: refusals(status_json(state)) == total, WAIT_S, "every refusal counted"
                )

                # A valid price batch, signed.
                for message in build_price_messages(
                    [{"sku": "4006381333931", "price": "1.99", "currency": "EUR"}],
                    version=1,
                    kind="full",
                    issued_at=datetime.now(UTC),
                    stores=[STORE],
                    signer=SIGNER,
                ):
                    hq.publish("down/prices", message)
                wait_for(
                    lambda: status_json(state)["downlink"]["price_version"] == 1,
                    WAIT_S,
                    "the price batch applied",
                )
                # A valid command, answered.
                hq.command("ping", "t1")
                reply = wait_for(lambda: hq.reply("t1"), WAIT_S, "the ping's reply")
                assert reply["ok"] is True
                assert reply["result"]["price_version"] == 1

                # A valid ack: HQ takes custody of the alert events the refusals raised.
                def alert_envelopes() -> list[dict[str, Any]]:
                    return [json.loads(p) for p, _ in hq.received("up/alerts")]

                envelopes = wait_for(alert_envelopes, WAIT_S, "alert events at HQ")
                epoch, seq = envelopes[0]["epoch"], envelopes[0]["seq_to"]
                hq.publish(
                    "down/ack",
                    json.dumps({"stream": "alerts", "epoch": epoch, "seq": seq}).encode(),
                )

                def alerts_acked() -> bool:
                    outbox = {s["stream"]: s for s in status_json(state)["outbox"]}
                    return bool(outbox["alerts"]["acked_seq"] >= seq)

                wait_for(alerts_acked, WAIT_S, "the ack taken")

                # Every refusal is visible where a technician looks.
                status = status_json(state)
                malformed = status["mqtt"]["malformed"]
                assert malformed["by_topic"]["down/ack"] == len(GARBAGE)
                assert refusals(status) == total  # the valid ones were not refused
                listing = json.loads(run_cli("alerts", "--json", "--socket", socket).stdout)
                active = {alert["key"]: alert for alert in listing["active"]}
                assert active["downlink.malformed"]["details"]["refused"] == malformed["refused"]
                text = run_cli("status", "--socket", socket).stdout
                assert f"{malformed['refused']} unreadable (down/ack {len(GARBAGE)}" in text

            # A restart: the persistent session holds nothing to redeliver, the count stays.
            (state / "again").mkdir()
            with running_daemon(config, notify_dir=state / "again"):
                hq.command("ping", "t2")
                reply = wait_for(lambda: hq.reply("t2"), WAIT_S, "the ping after the restart")
                assert reply["ok"] is True
                status = status_json(state)
                assert status["mqtt"]["malformed"]["refused"] == malformed["refused"]
                assert refusals(status) == total
    finally:
        hq.close()
