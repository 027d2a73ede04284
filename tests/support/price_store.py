"""A store's price path in-process, against a real broker: its database, outbox, alerts, the
price downlink and the uplink that sends its receipts and alerts — what ``hq push-prices``
talks to, at a fraction of a daemon's start-up cost (a fleet test runs several)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from gateway.alerts import Alerts
from gateway.clock import ClockSyncSource, SystemClock
from gateway.prices.downlink import PriceDownlink
from gateway.store import Database
from gateway.store.outbox import Outbox
from gateway.sync.commands import CommandProcessor, builtin_commands
from gateway.sync.config import MqttConfig
from gateway.sync.link import MqttLink
from gateway.sync.signing import Verifier
from gateway.sync.uplink import connect_outbox
from tests.support.broker import Broker
from tests.waiting import patience

__all__ = ["PriceStore", "price_store"]

STREAMS = ("stock", "dwell", "receipts", "alerts")


@dataclass
class PriceStore:
    store_id: str
    db: Database
    downlink: PriceDownlink
    link: MqttLink
    alerts: Alerts


@asynccontextmanager
async def price_store(
    directory: Path,
    broker: Broker,
    store_id: str,
    verifier: Verifier,
    *,
    username: str | None = None,
    password: str | None = None,
    uplink: bool = True,
) -> AsyncIterator[PriceStore]:
    """A connected store answering the read-only commands (``resync``…); on leaving, a clean
    stop (its retained state says offline). Its session persists at the broker: batches
    pushed meanwhile wait there for its return. ``uplink=False``: its receipts and alerts stay
    in its outbox (as if the broker dropped them on the way to HQ); ``up/sync`` still goes."""
    clock = SystemClock(sync=ClockSyncSource.ASSUME)
    directory.mkdir(parents=True, exist_ok=True)
    async with Database.running(directory / f"{store_id}.db", clock=clock) as db:
        outbox = Outbox(db, clock)
        await outbox.open(STREAMS)
        alerts = Alerts(db, outbox, clock)
        await alerts.load()
        config = MqttConfig(
            host=broker.host,
            port=broker.port,
            tls=False,
            allow_plaintext=True,
            client_id=f"gw-{store_id}",
            username=username,
            password=password,
        )
        link, sender = connect_outbox(
            outbox, config=config, store_id=store_id, boot=db.boot, clock=clock, alerts=alerts
        )
        downlink = PriceDownlink(
            database=db,
            outbox=outbox,
            alerts=alerts,
            clock=clock,
            verifier=verifier,
            store_id=store_id,
        )
        await downlink.load()
        downlink.attach(link)
        commands = CommandProcessor(
            database=db, clock=clock, verifier=verifier, store_id=store_id, alerts=alerts
        )

        async def describe() -> dict[str, object]:
            return {"store": store_id, "price_version": downlink.head}

        for spec in builtin_commands(
            link=link, announce_prices=downlink.announce, describe=describe
        ):
            commands.register(spec)
        commands.attach(link)
        tasks = [asyncio.create_task(link.run(), name=f"{store_id}.link")]
        if uplink:
            tasks.append(asyncio.create_task(sender.run(), name=f"{store_id}.uplink"))
        try:
            await asyncio.wait_for(link.connected.wait(), patience(15))
            yield PriceStore(store_id, db, downlink, link, alerts)
        finally:
            for task in reversed(tasks):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
