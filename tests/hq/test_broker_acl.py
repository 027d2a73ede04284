"""config/mosquitto-acl.example on a real mosquitto: a store authenticated as s1 can neither
publish on s2's topics nor read s2's downlink; HQ's user reads every uplink and writes every
downlink; the real store link and ``hq push-prices`` work under it."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.hq.fleet import Outcome
from gateway.hq.keys import generate_key
from gateway.hq.push import PricePush, push_to_fleet
from gateway.sync.signing import Verifier, decode_public_key
from tests.support.broker import Broker
from tests.support.price_store import price_store
from tests.waiting import patience, until, wait_until

EXAMPLE_ACL = Path(__file__).resolve().parents[2] / "config" / "mosquitto-acl.example"
USERS = ("hq", "s1", "s2", "observer")


def acl_broker(tmp_path: Path) -> Broker:
    """mosquitto with the shipped ACL as it is, plus a test-only observer that reads
    everything (to see what the broker let through)."""
    passwd = tmp_path / "passwd"
    for n, user in enumerate(USERS):
        create = ["-c"] if n == 0 else []
        subprocess.run(
            ["mosquitto_passwd", *create, "-b", str(passwd), user, f"pw-{user}"],
            check=True,
            capture_output=True,
        )
    acl = tmp_path / "acl"
    acl.write_text(
        EXAMPLE_ACL.read_text(encoding="utf-8") + "\nuser observer\ntopic read #\n",
        encoding="utf-8",
    )
    broker = Broker(
        tmp_path, extra=f"allow_anonymous false\npassword_file {passwd}\nacl_file {acl}"
    )
    broker.start()
    return broker


class Peer:
    """A paho client logged in as ``user``: what it received, each publish's PUBACK reason."""

    def __init__(
        self, broker: Broker, user: str, subscriptions: list[str], *, client_id: str = ""
    ) -> None:
        self.received: list[str] = []
        self.granted: list[ReasonCode] = []
        self.acks: dict[int, ReasonCode] = {}
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"peer-{user}",
            protocol=mqtt.MQTTv5,
        )
        self.client.username_pw_set(user, f"pw-{user}")
        self.client.on_message = lambda _c, _u, m: self.received.append(m.topic)
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        if subscriptions:
            self.client.subscribe([(topic, 1) for topic in subscriptions])
            assert self._subscribed.wait(patience(10))

    def _on_subscribe(
        self, _c: mqtt.Client, _u: object, _mid: int, codes: list[ReasonCode], _p: Properties
    ) -> None:
        self.granted = codes
        self._subscribed.set()

    def _on_publish(
        self, _c: mqtt.Client, _u: object, mid: int, code: ReasonCode, _p: Properties
    ) -> None:
        self.acks[mid] = code

    def publish(self, topic: str) -> ReasonCode:
        info = self.client.publish(topic, b'{"x": 1}', qos=1)
        info.wait_for_publish(patience(10))
        return self.acks[info.mid]

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_store_cannot_write_or_read_another_stores_topics_and_hq_can(tmp_path: Path) -> None:
    broker = acl_broker(tmp_path)
    observer = Peer(broker, "observer", ["#"])
    hq = Peer(broker, "hq", ["retail/v1/+/up/#", "retail/v1/+/state"])
    consumer = Peer(broker, "hq", ["$share/ingest/retail/v1/+/up/#"], client_id="peer-hq-share")
    s2 = Peer(broker, "s2", ["retail/v1/s2/down/#"])
    s1 = Peer(broker, "s1", ["retail/v1/s1/down/#", "retail/v1/s2/down/#", "retail/v1/+/down/#"])
    try:
        # s1 forges s2's uplink, state and downlink: refused, delivered to nobody.
        forged = ["retail/v1/s2/up/receipts", "retail/v1/s2/state", "retail/v1/s2/down/prices"]
        codes = [s1.publish(topic) for topic in forged]
        assert all(code.is_failure for code in codes), codes  # MQTT 5: not authorized
        assert s1.publish("retail/v1/s1/up/receipts").value == 0  # its own: accepted
        # Each subscriber gets one publisher's messages in order: once the marker is in, the
        # forgeries would be too. (s2 cannot read s1's marker: the observer speaks for it.)
        for peer in (observer, hq, consumer):  # consumer: HQ's $share form is allowed too
            wait_until(lambda peer=peer: "retail/v1/s1/up/receipts" in peer.received)
            assert not set(forged) & set(peer.received)

        # HQ writes s2's downlink, then s1's: s2 gets its own, s1 never gets s2's.
        assert hq.publish("retail/v1/s2/down/prices").value == 0
        assert hq.publish("retail/v1/s1/down/prices").value == 0
        wait_until(lambda: "retail/v1/s1/down/prices" in s1.received)
        wait_until(lambda: "retail/v1/s2/down/prices" in s2.received)
        assert "retail/v1/s2/down/prices" not in s1.received
        # A store cannot write HQ's side either: no store's downlink, not even its own.
        assert s1.publish("retail/v1/s1/down/ack").is_failure
    finally:
        for peer in (s1, s2, hq, consumer, observer):
            peer.stop()
        broker.stop()


async def test_the_store_link_and_a_fleet_push_work_under_the_acl(tmp_path: Path) -> None:
    broker = acl_broker(tmp_path)
    try:
        public = generate_key(tmp_path / "hq.key", "hq-1")
        verifier = Verifier({"hq-1": decode_public_key(public)})
        config = tmp_path / "hq.toml"
        config.write_text(
            f"[mqtt]\nhost = '{broker.host}'\nport = {broker.port}\ntls = false\n"
            "allow_plaintext = true\nusername = 'hq'\npassword = 'pw-hq'\n"
            f"[hq]\ndatabase = '{tmp_path / 'hq.db'}'\n"
            f"[signing]\nkey_file = '{tmp_path / 'hq.key'}'\nkid = 'hq-1'\n",
            encoding="utf-8",
        )
        prices = tmp_path / "prices.csv"
        prices.write_text("sku,price,currency\na,1.00,EUR\n", encoding="utf-8")
        async with (
            price_store(tmp_path, broker, "s1", verifier, username="s1", password="pw-s1") as s1,
            price_store(tmp_path, broker, "s2", verifier, username="s2", password="pw-s2") as s2,
        ):
            for name in ("s1", "s2"):
                await until(lambda name=name: broker.subscribed(f"retail/v1/{name}/down/prices"))
            summary = await push_to_fleet(
                PricePush.load(config, prices), kind="full", stores=["s1", "s2"], deadline_s=60
            )
            assert [r.outcome for r in summary.stores] == [Outcome.APPLIED, Outcome.APPLIED]
            assert s1.downlink.head == s2.downlink.head == 1
            assert json.loads(json.dumps(summary.as_dict()))["ok"] is True
    finally:
        broker.stop()
