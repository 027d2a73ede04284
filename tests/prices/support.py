"""The price downlink's harness: a store's real PriceDownlink on SQLite (no broker) fed HQ's
signed price batches, built by HQ's own tool. Shared by the prices tests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.alerts import Alerts
from gateway.clock import FakeClock
from gateway.hq.prices import build_price_messages
from gateway.prices.book import PriceBook
from gateway.prices.downlink import PriceDownlink, PriceDownlinkSettings
from gateway.store import Database
from gateway.store.outbox import Outbox
from gateway.sync.link import InboundMessage
from gateway.sync.signing import Signer, Verifier

__all__ = ["HQ_KEY", "SIGNER", "STREAMS", "Store", "batch", "item", "store"]

STREAMS = ("stock", "dwell", "receipts", "alerts")
HQ_KEY = Ed25519PrivateKey.generate()
SIGNER = Signer("hq-1", HQ_KEY)


@dataclass
class Store:
    db: Database
    outbox: Outbox
    alerts: Alerts
    downlink: PriceDownlink
    book: PriceBook
    clock: FakeClock

    async def receive(self, payload: bytes) -> None:
        await self.downlink.on_message(
            InboundMessage("retail/v1/s1/down/prices", payload, 1, False, None, None)
        )

    async def receipts(self) -> list[tuple[str, dict[str, Any]]]:
        events = await self.outbox.read("receipts", after_seq=0, max_events=1000, max_bytes=10**9)
        return [(e.type, json.loads(e.body)) for e in events]

    async def prices(self) -> dict[str, str]:
        rows = await self.db.fetchall("SELECT sku, price FROM price_book ORDER BY sku")
        return {r["sku"]: r["price"] for r in rows}


@asynccontextmanager
async def store(
    tmp_path: Path, *, signed: bool = True, groups: tuple[str, ...] = ()
) -> AsyncIterator[Store]:
    clock = FakeClock()
    async with Database.running(tmp_path / "g.db", clock=clock) as db:
        outbox = Outbox(db, clock)
        await outbox.open(STREAMS)
        alerts = Alerts(db, outbox, clock)
        await alerts.load()
        verifier = Verifier({"hq-1": HQ_KEY.public_key()} if signed else {})
        downlink = PriceDownlink(
            database=db,
            outbox=outbox,
            alerts=alerts,
            clock=clock,
            verifier=verifier,
            store_id="s1",
            settings=PriceDownlinkSettings(groups=groups, parts_timeout_s=600),
        )
        await downlink.load()
        yield Store(db, outbox, alerts, downlink, PriceBook(db), clock)


def item(sku: str, price: str, **extra: Any) -> dict[str, Any]:
    return {"sku": sku, "price": price, "currency": "EUR", **extra}


def batch(
    clock: FakeClock,
    version: int,
    items: list[dict[str, Any]],
    *,
    kind: str = "delta",
    signer: Signer | None = SIGNER,
    **extra: Any,
) -> list[bytes]:
    return build_price_messages(
        items,
        version=version,
        kind=kind,  # type: ignore[arg-type]
        issued_at=clock.utc_now(),
        stores=extra.pop("stores", ["s1"]),
        signer=signer,
        **extra,
    )
