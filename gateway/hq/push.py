"""``storegw hq push-prices``: a price list → one signed batch per store, published.

Versions are strictly increasing *per store*: HQ keeps the last version it pushed to each store
in its database (``hq_price_versions``), so every store sees 1, 2, 3… without gaps whatever mix
of stores and groups a push targets. Each store gets its own batch (its own version, scoped to
it and to the group named), split into parts under the broker's message size.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from gateway.clock import SystemClock, isoformat_utc
from gateway.errors import ConfigError, ConfigIssue, LinkDownError
from gateway.hq.consumer import HQ_MIGRATIONS
from gateway.hq.prices import build_price_messages, read_price_list, read_promotions
from gateway.hq.tail import HqSettings, load_hq_config
from gateway.store.database import Database
from gateway.sync.link import MqttLink
from gateway.sync.signing import Signer

__all__ = ["PricePush", "push_prices"]


def _targets(settings: HqSettings, stores: Sequence[str], groups: Sequence[str]) -> list[str]:
    targets = list(stores)
    for group in groups:
        members = settings.groups.get(group)
        if members is None:
            raise ConfigError("HQ.toml", [ConfigIssue(f"groups.{group}", "unknown group")])
        targets += members
    if not targets:
        raise ValueError("name at least one --store or --group")
    return sorted(set(targets))


@dataclass(frozen=True, slots=True)
class PricePush:
    """Everything read from disk before anything is sent (so a bad file sends nothing)."""

    settings: HqSettings
    items: list[dict[str, Any]]
    signer: Signer | None
    promotions: list[dict[str, Any]] = field(default_factory=list)
    cancel_promotions: list[str] = field(default_factory=list)

    @classmethod
    def load(
        cls,
        config_path: Path,
        price_file: Path | None,
        *,
        promotions_file: Path | None = None,
        cancel_promotions: Sequence[str] = (),
        now: datetime | None = None,
    ) -> PricePush:
        """Read and validate everything; ``now`` anchors relative promotion instants."""
        settings = load_hq_config(config_path)
        items = []
        if price_file is not None:
            text = price_file.read_text(encoding="utf-8")
            items = read_price_list(text, filename=price_file.name)
        promotions = []
        if promotions_file is not None:
            promotions = read_promotions(
                promotions_file.read_text(encoding="utf-8"),
                now=now or SystemClock().utc_now(),
                filename=promotions_file.name,
            )
        if not (items or promotions or cancel_promotions):
            raise ValueError("nothing to push: give a price list, promotions or cancellations")
        signer = None
        if settings.signing is not None:
            pem = settings.signing.key_file.read_bytes()
            signer = Signer.from_pem(settings.signing.kid, pem)
        return cls(settings, items, signer, promotions, list(cancel_promotions))


async def push_prices(
    push: PricePush,
    *,
    kind: Literal["full", "delta"],
    stores: Sequence[str] = (),
    groups: Sequence[str] = (),
    delete: Sequence[str] = (),
    connect_timeout_s: float = 30.0,
) -> dict[str, int]:
    """Publish the batch to every target store; returns store → version pushed."""
    settings, items, signer = push.settings, push.items, push.signer
    targets = _targets(settings, stores, groups)
    clock = SystemClock()
    mqtt = settings.mqtt.model_copy(update={"client_id": None})  # never steal tail's session
    prefix = mqtt.topic_root.split("{store_id}")[0]
    pushed: dict[str, int] = {}
    async with Database.running(
        settings.hq.prices_path(), clock=clock, migrations=HQ_MIGRATIONS
    ) as database:
        link = MqttLink(config=mqtt, store_id="hq-push", boot=0, clock=clock, announce=False)
        task = asyncio.create_task(link.run(), name="hq.push.link")
        try:
            async with asyncio.timeout(connect_timeout_s):
                await link.connected.wait()
            for store in targets:
                row = await database.fetchone(
                    "SELECT version FROM hq_price_versions WHERE store = ?", (store,)
                )
                version = (int(row["version"]) if row is not None else 0) + 1
                messages = build_price_messages(
                    items,
                    version=version,
                    kind=kind,
                    issued_at=clock.utc_now(),
                    # Versions are per store: a batch names exactly one store, so it can never
                    # be replayed to another member of a group.
                    stores=[store],
                    delete=delete,
                    promotions=push.promotions,
                    cancel_promotions=push.cancel_promotions,
                    signer=signer,
                    max_message_bytes=mqtt.max_message_bytes,
                )
                # The version is taken before anything is sent: a push that fails half-way
                # is re-done under a new version, never mixed into the old one.
                await database.write(
                    "INSERT INTO hq_price_versions VALUES (?, ?, ?) ON CONFLICT (store) "
                    "DO UPDATE SET version = excluded.version, pushed_at = excluded.pushed_at",
                    (store, version, isoformat_utc(clock.utc_now())),
                )
                for message in messages:
                    await link.publish(f"{prefix}{store}/down/prices", message)
                pushed[store] = version
        except TimeoutError:
            raise LinkDownError(
                f"no connection to {mqtt.host}:{mqtt.port} within {connect_timeout_s:.0f} s"
            ) from None
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return pushed
