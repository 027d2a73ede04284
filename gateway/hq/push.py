"""``storegw hq push-prices``: a price list → one signed batch per store, published to a whole
fleet at once, and (``push_to_fleet``) what each store did with it.

Versions are strictly increasing *per store*: HQ keeps the last version it pushed to each store
in its database (``hq_price_versions``), so every store sees 1, 2, 3… without gaps whatever mix
of stores and groups a push targets. Each store gets its own batch (its own version, scoped to
it alone), split into parts under the broker's message size; the list is encoded once, each
store's batch built and signed when its turn to be published comes, and the publishes are
pipelined across the fleet. ``push_to_fleet`` then listens read-only to the stores' receipts,
state, refusal alerts and ``up/sync`` and classifies each store (:mod:`gateway.hq.fleet`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from gateway.clock import SystemClock
from gateway.errors import ConfigError, ConfigIssue, LinkError
from gateway.hq import DEFAULT_DEADLINE_S
from gateway.hq.consumer import HQ_MIGRATIONS
from gateway.hq.fleet import TOPICS, FleetProgress, FleetPush, FleetSummary
from gateway.hq.prices import PriceParts, read_price_list, read_promotions
from gateway.hq.publish import (
    PROBE_QUIET_S,
    FleetRun,
    Plan,
    new_link,
    publish_all,
    run_link,
    stop,
    take_versions,
)
from gateway.hq.tail import HqSettings, load_hq_config
from gateway.store.database import Database
from gateway.sync.signing import Signer

__all__ = ["DEFAULT_DEADLINE_S", "PricePush", "push_prices", "push_to_fleet"]


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

    def plan(
        self,
        versions: dict[str, int],
        *,
        kind: Literal["full", "delta"],
        delete: Sequence[str],
        issued_at: datetime,
    ) -> Plan:
        """The batches for these versions (built later, store by store, when published)."""
        return Plan(
            versions,
            PriceParts.of(
                self.items,
                signed=self.signer is not None,
                max_message_bytes=self.settings.mqtt.max_message_bytes,
            ),
            kind,
            issued_at,
            self.signer,
            delete,
            self.promotions,
            self.cancel_promotions,
        )


async def push_prices(
    push: PricePush,
    *,
    kind: Literal["full", "delta"],
    stores: Sequence[str] = (),
    groups: Sequence[str] = (),
    delete: Sequence[str] = (),
    connect_timeout_s: float = 30.0,
) -> dict[str, int]:
    """Publish the batch to every target store, waiting for nothing but the broker's
    acceptance; returns store → version pushed. (:func:`push_to_fleet` also waits for what
    the stores did with it.)"""
    settings = push.settings
    targets = _targets(settings, stores, groups)
    clock = SystemClock()
    async with Database.running(
        settings.hq.prices_path(), clock=clock, migrations=HQ_MIGRATIONS
    ) as database:
        link = new_link(settings)
        task = await run_link(link, settings, connect_timeout_s)
        try:
            now = clock.utc_now()
            versions = await take_versions(database, targets, now)
            plan = push.plan(versions, kind=kind, delete=delete, issued_at=now)
            prefix = settings.mqtt.topic_root.split("{store_id}")[0]
            try:
                await publish_all(link, prefix, plan)
            except* LinkError as failed:
                raise failed.exceptions[0] from None
        finally:
            await stop(task)
    return versions


async def push_to_fleet(
    push: PricePush,
    *,
    kind: Literal["full", "delta"],
    stores: Sequence[str] = (),
    groups: Sequence[str] = (),
    delete: Sequence[str] = (),
    deadline_s: float = DEFAULT_DEADLINE_S,
    wait_offline: bool = False,
    on_progress: Callable[[FleetProgress], None] | None = None,
    connect_timeout_s: float = 30.0,
    probe_quiet_s: float = PROBE_QUIET_S,
) -> FleetSummary:
    """Push the batch to every target store and wait — at most ``deadline_s`` from the first
    publish — for what each did with it: applied, refused (with the reason), behind, offline,
    no answer, not sent (:class:`~gateway.hq.fleet.Outcome`). Returns early once nothing more
    can come (:meth:`FleetPush.settled`); once everything is published, stores online but
    quiet for ``probe_quiet_s`` are asked for their version (``resync`` → ``up/sync``: a
    receipt lost on the way does not leave them behind). Connecting has its own
    ``connect_timeout_s`` (LinkDownError). For scripts and benches: ``PricePush(settings,
    items, signer)`` builds the push without files; the CLI prints the summary returned."""
    settings = push.settings
    targets = _targets(settings, stores, groups)
    clock = SystemClock()
    async with Database.running(
        settings.hq.prices_path(), clock=clock, migrations=HQ_MIGRATIONS
    ) as database:
        run = FleetRun(on_progress, probe_quiet_s=probe_quiet_s)
        link = new_link(settings)
        for topic in TOPICS:  # read-only copies: custody acks stay with `hq tail`
            link.subscribe(topic, run.on_message)
        task = await run_link(link, settings, connect_timeout_s)
        try:
            now = clock.utc_now()
            versions = await take_versions(database, targets, now)
            plan = push.plan(versions, kind=kind, delete=delete, issued_at=now)
            tracker = run.start(
                FleetPush(versions, started_at=now, topic_root=settings.mqtt.topic_root)
            )
            prefix = settings.mqtt.topic_root.split("{store_id}")[0]
            started = clock.monotonic()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline_s):
                    await run.publish_and_wait(link, prefix, plan, wait_offline=wait_offline)
            for store in versions:  # the deadline cut these publishes short
                if not tracker.sent(store):
                    tracker.send_failed(store, "the deadline passed before the broker took it")
        finally:
            await stop(task)
    if on_progress is not None:
        on_progress(tracker.progress())
    return tracker.summary(elapsed_s=clock.monotonic() - started, deadline_s=deadline_s)
