"""`storegw hq push-prices` to a fleet, end to end: a real mosquitto, stores running their real
price path in-process, the CLI as a subprocess — applied, refused, offline, no answer."""

from __future__ import annotations

import asyncio
import json
import sys
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from gateway.hq.fleet import EXIT_NOT_APPLIED, EXIT_REFUSED, Outcome
from gateway.hq.keys import generate_key
from gateway.hq.prices import build_price_messages
from gateway.hq.push import PricePush, push_to_fleet
from gateway.sync.signing import Signer, Verifier, decode_public_key
from tests.support.broker import Broker
from tests.support.price_store import price_store
from tests.waiting import patience, until

STOREGW = str(Path(sys.executable).with_name("storegw"))


def hq_config(
    tmp_path: Path, broker: Broker, groups: dict[str, list[str]]
) -> tuple[Path, Verifier]:
    public = generate_key(tmp_path / "hq.key", "hq-1")
    config = tmp_path / "hq.toml"
    config.write_text(
        f"[mqtt]\nhost = '{broker.host}'\nport = {broker.port}\ntls = false\n"
        f"allow_plaintext = true\n[hq]\ndatabase = '{tmp_path / 'hq.db'}'\n"
        f"[signing]\nkey_file = '{tmp_path / 'hq.key'}'\nkid = 'hq-1'\n[groups]\n"
        + "".join(f"{name} = {json.dumps(members)}\n" for name, members in groups.items()),
        encoding="utf-8",
    )
    return config, Verifier({"hq-1": decode_public_key(public)})


def price_list(tmp_path: Path, price: str) -> Path:
    path = tmp_path / f"prices-{price}.csv"
    path.write_text(f"sku,price,currency\na,{price},EUR\nb,2.00,EUR\n", encoding="utf-8")
    return path


async def storegw(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        STOREGW, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), patience(90))
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_a_fleet_push_reports_applied_refused_and_offline_stores(
    tmp_path: Path, mosquitto: Broker
) -> None:
    good = ["s1", "s2", "s3"]
    config, verifier = hq_config(tmp_path, mosquitto, {"north": [*good, "s4", "s5"]})
    wrong_key = Verifier({"hq-1": Ed25519PrivateKey.generate().public_key()})
    async with AsyncExitStack() as fleet:
        stores = {
            name: await fleet.enter_async_context(
                price_store(tmp_path / "stores", mosquitto, name, verifier)
            )
            for name in good
        }
        refusing = await fleet.enter_async_context(
            price_store(tmp_path / "stores", mosquitto, "s4", wrong_key)
        )
        async with price_store(tmp_path / "stores", mosquitto, "s5", verifier):
            pass  # s5 was online once and stopped cleanly: its retained state says offline
        for name in [*good, "s4", "s5"]:
            await until(lambda name=name: mosquitto.subscribed(f"retail/v1/{name}/down/prices"))

        code, out, err = await storegw(
            "hq", "push-prices", "--config", str(config), "--full", "--group", "north",
            "--json", str(price_list(tmp_path, "1.00")),
        )  # fmt: skip
        assert code == EXIT_REFUSED, err
        summary = json.loads(out)
        assert summary["counts"]["applied"] == 3
        assert summary["counts"]["refused"] == 1
        assert summary["counts"]["offline"] == 1
        by_store = {entry["store"]: entry for entry in summary["stores"]}
        assert {by_store[name]["outcome"] for name in good} == {"applied"}
        assert by_store["s4"]["outcome"] == "refused"
        assert "downlink.signature" in by_store["s4"]["detail"]
        assert by_store["s5"]["outcome"] == "offline"
        assert "sent 5/5" in err  # the progress lines (stdout carries the JSON)
        for name in good:
            assert stores[name].downlink.head == 1
        assert refusing.downlink.head == 0

        # A batch for s1 replayed on s2's topic: s2 refuses it and says why.
        [replayed] = build_price_messages(
            [{"sku": "a", "price": "0.01", "currency": "EUR"}],
            version=2,
            kind="delta",
            issued_at=datetime.now(UTC),
            stores=["s1"],
            signer=Signer.from_pem("hq-1", (tmp_path / "hq.key").read_bytes()),
        )
        publisher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        publisher.connect(mosquitto.host, mosquitto.port)
        publisher.loop_start()
        try:
            info = publisher.publish("retail/v1/s2/down/prices", replayed, qos=1)
            info.wait_for_publish(patience(10))
        finally:
            publisher.disconnect()
            publisher.loop_stop()
        await until(lambda: stores["s2"].downlink.refused == 1)
        assert "does not include store 's2'" in stores["s2"].downlink.status()["last_refusal"]
        assert stores["s2"].downlink.head == 1

    # s5 returns: the broker kept its v1; a second push (the Python entry point) finds s1
    # and s5 applying their next version — and s6, whose receipts never reach HQ (as if the
    # broker dropped them), asked for its version once it stays quiet: applied all the same.
    async with (
        price_store(tmp_path / "stores", mosquitto, "s1", verifier) as s1,
        price_store(tmp_path / "stores", mosquitto, "s5", verifier) as s5,
        price_store(tmp_path / "stores", mosquitto, "s6", verifier, uplink=False) as s6,
    ):
        await until(lambda: s5.downlink.head == 1)
        for name in ("s1", "s6"):
            await until(lambda name=name: mosquitto.subscribed(f"retail/v1/{name}/down/cmd/+"))
        push = PricePush.load(config, price_list(tmp_path, "1.10"))
        summary = await push_to_fleet(
            push, kind="full", stores=["s1", "s5", "s6"], deadline_s=60, probe_quiet_s=0.2
        )
        assert summary.exit_code == 0, summary.as_dict()
        assert summary.versions() == {"s1": 2, "s5": 2, "s6": 1}
        assert {result.outcome for result in summary.stores} == {Outcome.APPLIED}
        assert s1.downlink.head == s5.downlink.head == 2
        assert s6.downlink.head == 1
        assert s6.downlink.last_resync_request is not None  # how HQ learnt it


async def test_a_store_never_heard_of_is_no_answer_at_the_deadline(
    tmp_path: Path, mosquitto: Broker
) -> None:
    config, _ = hq_config(tmp_path, mosquitto, {})
    code, out, err = await storegw(
        "hq", "push-prices", "--config", str(config), "--full", "--store", "ghost",
        "--deadline", "0.5", str(price_list(tmp_path, "1.00")),
    )  # fmt: skip
    assert code == EXIT_NOT_APPLIED, err
    assert "1 no answer" in out
    assert "ghost" in out
    assert "nothing heard from the store" in out
    # --no-wait only publishes (as the tool did before): the next version, exit 0.
    code, out, err = await storegw(
        "hq", "push-prices", "--config", str(config), "--delta", "--store", "ghost",
        "--no-wait", str(price_list(tmp_path, "1.10")),
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out) == {"ghost": 2}
