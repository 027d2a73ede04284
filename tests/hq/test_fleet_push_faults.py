"""`hq push-prices` against real stores and a real mosquitto, where it used to be weak: a store
refusing again (no new alert: its ``up/sync`` says so), targets that never connected (they no
longer hold the push until the deadline), and the broker restarted mid-push."""

from __future__ import annotations

import json
from collections.abc import Collection
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.hq.fleet import EXIT_NOT_APPLIED, EXIT_REFUSED, FleetProgress, Outcome
from gateway.hq.keys import generate_key
from gateway.hq.push import PricePush, push_to_fleet
from gateway.prices.downlink import AppliedHook
from gateway.sync.signing import Verifier, decode_public_key
from tests.support.broker import Broker
from tests.support.price_store import price_store
from tests.waiting import until


def hq_config(tmp_path: Path, broker: Broker, mqtt: str = "") -> tuple[Path, Verifier]:
    public = generate_key(tmp_path / "hq.key", "hq-1")
    config = tmp_path / "hq.toml"
    config.write_text(
        f"[mqtt]\nhost = '{broker.host}'\nport = {broker.port}\ntls = false\n"
        f"allow_plaintext = true\n{mqtt}[hq]\ndatabase = '{tmp_path / 'hq.db'}'\n"
        f"[signing]\nkey_file = '{tmp_path / 'hq.key'}'\nkid = 'hq-1'\n",
        encoding="utf-8",
    )
    return config, Verifier({"hq-1": decode_public_key(public)})


def price_list(tmp_path: Path, price: str, items: int = 2) -> Path:
    path = tmp_path / f"prices-{price}.csv"
    rows = "".join(f"sku-{n:04d},{price},EUR\n" for n in range(items))
    path.write_text(f"sku,price,currency\n{rows}", encoding="utf-8")
    return path


async def test_a_repeated_refusal_is_refused_and_a_store_never_seen_does_not_hold_the_push(
    tmp_path: Path, mosquitto: Broker
) -> None:
    config, verifier = hq_config(tmp_path, mosquitto)
    wrong_key = Verifier({"hq-1": Ed25519PrivateKey.generate().public_key()})
    async with (
        price_store(tmp_path / "stores", mosquitto, "s1", verifier) as good,
        price_store(tmp_path / "stores", mosquitto, "s4", wrong_key) as refusing,
    ):
        for name in ("s1", "s4"):
            await until(lambda name=name: mosquitto.subscribed(f"retail/v1/{name}/down/cmd/+"))
        # The deadline is far: "ghost" (no retained state at all) must not hold the push.
        first = await push_to_fleet(
            PricePush.load(config, price_list(tmp_path, "1.00")),
            kind="full",
            stores=["s1", "s4", "ghost"],
            deadline_s=600,
            probe_quiet_s=0.2,
        )
        outcomes = {result.store: result for result in first.stores}
        assert outcomes["s1"].outcome is Outcome.APPLIED
        assert outcomes["s4"].outcome is Outcome.REFUSED
        assert "downlink.signature" in outcomes["s4"].detail
        assert outcomes["ghost"].outcome is Outcome.NEVER_CONNECTED
        assert first.exit_code == EXIT_REFUSED
        assert refusing.alerts.get("downlink.signature") is not None

        # Again: the alert is active, so no new alert event — the resync's up/sync names it.
        second = await push_to_fleet(
            PricePush.load(config, price_list(tmp_path, "1.10")),
            kind="full",
            stores=["s4"],
            deadline_s=600,
            probe_quiet_s=0.2,
        )
        [result] = second.stores
        assert result.outcome is Outcome.REFUSED, result.detail
        assert "downlink.signature" in result.detail
        assert "last_refused" in result.detail
        assert second.exit_code == EXIT_REFUSED
        assert refusing.downlink.last_refused is not None
        assert refusing.downlink.last_refused["version"] == 2
        assert refusing.downlink.head == 0
        assert good.downlink.head == 1

        # --wait-offline: a target never seen waits for the deadline again (no answer).
        third = await push_to_fleet(
            PricePush.load(config, price_list(tmp_path, "1.20")),
            kind="full",
            stores=["ghost"],
            deadline_s=0.5,
            wait_offline=True,
        )
        assert third.exit_code == EXIT_NOT_APPLIED
        assert {r.outcome for r in third.stores} <= {Outcome.NO_ANSWER, Outcome.NEVER_CONNECTED}


def recorder(versions: list[int]) -> AppliedHook:
    def record(version: int, _skus: Collection[str] | None) -> None:
        versions.append(version)

    return record


@pytest.mark.slow
async def test_a_broker_restarted_mid_push_leaves_every_store_applied_once(
    tmp_path: Path,
) -> None:
    broker = Broker(tmp_path, extra=f"persistence true\npersistence_location {tmp_path}/\n")
    broker.start()
    names = [f"s{n}" for n in range(1, 5)]
    applied: dict[str, list[int]] = {name: [] for name in names}
    try:
        # Small messages: every store's batch comes in many parts, so the restart lands
        # while publishes are in flight.
        config, verifier = hq_config(tmp_path, broker, "max_message_bytes = 1024\n")
        async with AsyncExitStack() as fleet:
            for name in names:
                store = await fleet.enter_async_context(
                    price_store(tmp_path / "stores", broker, name, verifier)
                )
                store.downlink.on_applied = recorder(applied[name])
                await until(lambda name=name: broker.subscribed(f"retail/v1/{name}/down/cmd/+"))
            restarted: list[FleetProgress] = []

            def restart_mid_push(progress: FleetProgress) -> None:
                # Synchronous, on the event loop: nothing is published or read meanwhile.
                if not restarted and progress.sent < progress.total:
                    restarted.append(progress)
                    broker.stop()  # SIGTERM: mosquitto saves its sessions and queues
                    broker.start()

            summary = await push_to_fleet(
                PricePush.load(config, price_list(tmp_path, "1.00", items=60)),
                kind="full",
                stores=names,
                deadline_s=120,
                on_progress=restart_mid_push,
                probe_quiet_s=0.5,
            )
            assert restarted, "the push finished before the restart"
            assert summary.exit_code == 0, json.dumps(summary.as_dict(), indent=1)
            # The next push follows on: v2 everywhere, no gap, nothing applied twice.
            again = await push_to_fleet(
                PricePush.load(config, price_list(tmp_path, "1.10", items=3)),
                kind="full",
                stores=names,
                deadline_s=120,
                probe_quiet_s=0.5,
            )
            assert again.exit_code == 0, json.dumps(again.as_dict(), indent=1)
        assert applied == {name: [1, 2] for name in names}
    finally:
        broker.stop()
