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
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from gateway.clock import SystemClock, isoformat_utc
from gateway.errors import ConfigError, ConfigIssue, LinkDownError, LinkError
from gateway.hq.consumer import HQ_MIGRATIONS
from gateway.hq.fleet import TOPICS, FleetProgress, FleetPush, FleetSummary
from gateway.hq.prices import PriceParts, read_price_list, read_promotions
from gateway.hq.tail import HqSettings, load_hq_config
from gateway.store.database import Database
from gateway.sync.link import InboundMessage, MqttLink
from gateway.sync.signing import Signer

__all__ = ["DEFAULT_DEADLINE_S", "PricePush", "push_prices", "push_to_fleet"]

#: How long ``push-prices`` waits for the stores' receipts by default.
DEFAULT_DEADLINE_S = 120.0


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


@dataclass(frozen=True, slots=True)
class _Plan:
    """Every target's version, taken; its batch is built and signed only when its turn to be
    published comes (a thousand stores' batches of a big list never sit in memory at once,
    and signing overlaps the broker's work)."""

    versions: dict[str, int]
    parts: PriceParts
    push: PricePush
    kind: Literal["full", "delta"]
    delete: Sequence[str]
    issued_at: datetime

    def messages(self, store: str) -> list[bytes]:
        return self.parts.messages(
            version=self.versions[store],
            kind=self.kind,
            issued_at=self.issued_at,
            # Versions are per store: a batch names exactly one store, so it can never be
            # replayed to another member of a group.
            stores=[store],
            delete=self.delete,
            promotions=self.push.promotions,
            cancel_promotions=self.push.cancel_promotions,
            signer=self.push.signer,
        )


async def _plan(
    database: Database,
    push: PricePush,
    targets: Sequence[str],
    *,
    kind: Literal["full", "delta"],
    delete: Sequence[str],
    issued_at: datetime,
    max_message_bytes: int,
) -> _Plan:
    """Every target's next version, taken (one transaction) before anything is sent: a push
    that fails half-way is re-done under new versions, never mixed into the old ones."""
    rows = await database.fetchall("SELECT store, version FROM hq_price_versions")
    last = {str(row["store"]): int(row["version"]) for row in rows}
    versions = {store: last.get(store, 0) + 1 for store in targets}
    parts = PriceParts.of(
        push.items, signed=push.signer is not None, max_message_bytes=max_message_bytes
    )
    stamp = isoformat_utc(issued_at)
    await database.submit_atomic(
        [(_TAKE_VERSION, (store, version, stamp)) for store, version in versions.items()]
    )
    return _Plan(versions, parts, push, kind, delete, issued_at)


_TAKE_VERSION = (
    "INSERT INTO hq_price_versions VALUES (?, ?, ?) ON CONFLICT (store) "
    "DO UPDATE SET version = excluded.version, pushed_at = excluded.pushed_at"
)


async def _run_link(
    link: MqttLink, settings: HqSettings, connect_timeout_s: float
) -> asyncio.Task[None]:
    task = asyncio.create_task(link.run(), name="hq.push.link")
    try:
        async with asyncio.timeout(connect_timeout_s):
            await link.connected.wait()
    except TimeoutError:
        await _stop(task)
        raise LinkDownError(
            f"no connection to {settings.mqtt.host}:{settings.mqtt.port} "
            f"within {connect_timeout_s:.0f} s"
        ) from None
    return task


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _new_link(settings: HqSettings) -> MqttLink:
    """A one-shot link for the push: its own client id and a clean session the broker forgets
    at disconnect (a persistent one would queue the fleet's receipts for nobody)."""
    mqtt = settings.mqtt.model_copy(update={"client_id": f"storegw-hq-push-{secrets.token_hex(4)}"})
    return MqttLink(
        config=mqtt,
        store_id="+",  # every store's topic root: subscriptions take a wildcard
        boot=0,
        clock=SystemClock(),
        announce=False,
        session_expiry_s=0,
    )


#: Publishers working through the fleet: enough to keep the link's window (at most 20 in
#: flight) full while some of them build and sign their next store's batch.
_PUBLISHERS = 32
#: A store's batch is tried again after the link dropped (the same version and bytes: a
#: duplicate is a no-op at the store), this many times at most, once the link is back.
_ATTEMPTS = 5
_RETRY_PAUSE_S = 0.5


class _Publisher(Protocol):
    """What publishing needs of the link (:class:`MqttLink`)."""

    @property
    def connected(self) -> asyncio.Event: ...

    async def publish(self, topic: str, payload: bytes) -> None: ...


async def _publish_all(
    link: _Publisher,
    prefix: str,
    plan: _Plan,
    *,
    on_sent: Callable[[str, int], None] = lambda _store, _parts: None,
    on_failed: Callable[[str, str], None] | None = None,
) -> None:
    """Publish every store's batch, pipelined: publishers take the next store, build its batch
    and publish its parts in order; together they keep as many publishes in flight as the
    broker's Receive Maximum lets the link. ``on_sent(store, parts)`` after each part the
    broker took. With ``on_failed``, a store whose parts the link dropped is tried again once
    the link is back (at most ``_ATTEMPTS`` times), and a store the broker refused, or that
    ran out of attempts, is reported there; without it the first failure is raised."""
    stores = iter(plan.versions)

    async def publish(store: str) -> None:
        messages = plan.messages(store)
        sent = 0
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                for message in messages[sent:]:
                    await link.publish(f"{prefix}{store}/down/prices", message)
                    sent += 1
                    on_sent(store, len(messages))
            except LinkDownError:
                if on_failed is None or attempt == _ATTEMPTS:
                    raise
                await asyncio.sleep(_RETRY_PAUSE_S)  # the link notices the drop meanwhile
                await link.connected.wait()
            else:
                return

    async def publisher() -> None:
        for store in stores:
            try:
                await publish(store)
            except LinkError as exc:
                if on_failed is None:
                    raise
                on_failed(store, str(exc))

    async with asyncio.TaskGroup() as group:
        for _ in range(min(_PUBLISHERS, len(plan.versions))):
            group.create_task(publisher())


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
        link = _new_link(settings)
        task = await _run_link(link, settings, connect_timeout_s)
        try:
            plan = await _plan(
                database,
                push,
                targets,
                kind=kind,
                delete=delete,
                issued_at=clock.utc_now(),
                max_message_bytes=settings.mqtt.max_message_bytes,
            )
            prefix = settings.mqtt.topic_root.split("{store_id}")[0]
            try:
                await _publish_all(link, prefix, plan)
            except* LinkError as failed:
                raise failed.exceptions[0] from None
        finally:
            await _stop(task)
    return dict(plan.versions)


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
) -> FleetSummary:
    """Push the batch to every target store and wait — at most ``deadline_s`` from the first
    publish — for what each did with it: applied, refused (with the reason), behind, offline,
    no answer, not sent (:class:`~gateway.hq.fleet.Outcome`). Returns early once nothing more
    can come (:meth:`FleetPush.settled`). Connecting has its own ``connect_timeout_s``
    (LinkDownError). For scripts and benches: ``PricePush(settings, items, signer)`` builds the
    push without files; the CLI prints the summary returned."""
    settings = push.settings
    targets = _targets(settings, stores, groups)
    clock = SystemClock()
    async with Database.running(
        settings.hq.prices_path(), clock=clock, migrations=HQ_MIGRATIONS
    ) as database:
        run = _FleetRun(on_progress)
        link = _new_link(settings)
        for topic in TOPICS:  # read-only copies: custody acks stay with `hq tail`
            link.subscribe(topic, run.on_message)
        task = await _run_link(link, settings, connect_timeout_s)
        try:
            plan = await _plan(
                database,
                push,
                targets,
                kind=kind,
                delete=delete,
                issued_at=clock.utc_now(),
                max_message_bytes=settings.mqtt.max_message_bytes,
            )
            tracker = run.start(
                FleetPush(
                    dict(plan.versions),
                    started_at=clock.utc_now(),
                    topic_root=settings.mqtt.topic_root,
                )
            )
            prefix = settings.mqtt.topic_root.split("{store_id}")[0]
            started = clock.monotonic()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline_s):
                    await run.publish_and_wait(link, prefix, plan, wait_offline=wait_offline)
            for store in plan.versions:  # the deadline cut these publishes short
                if not tracker.sent(store):
                    tracker.send_failed(store, "the deadline passed before the broker took it")
        finally:
            await _stop(task)
    if on_progress is not None:
        on_progress(tracker.progress())
    return tracker.summary(elapsed_s=clock.monotonic() - started, deadline_s=deadline_s)


class _FleetRun:
    """The push's I/O around its sans-IO tracker: messages in, publishes out, progress."""

    def __init__(self, on_progress: Callable[[FleetProgress], None] | None) -> None:
        self._on_progress = on_progress
        self._tracker: FleetPush | None = None
        self._early: list[tuple[str, bytes]] = []  # came before the batches were planned
        self._changed = asyncio.Event()

    def start(self, tracker: FleetPush) -> FleetPush:
        self._tracker = tracker
        for topic, payload in self._early:
            tracker.receive(topic, payload)
        self._early.clear()
        return tracker

    async def on_message(self, message: InboundMessage) -> None:
        if self._tracker is None:
            self._early.append((message.topic, message.payload))
        elif self._tracker.receive(message.topic, message.payload):
            self._changed.set()

    def _sent(self, store: str, parts: int) -> None:
        assert self._tracker is not None
        self._tracker.part_sent(store, parts)
        self._changed.set()

    def _failed(self, store: str, reason: str) -> None:
        assert self._tracker is not None
        self._tracker.send_failed(store, reason)
        self._changed.set()

    async def publish_and_wait(
        self, link: MqttLink, prefix: str, plan: _Plan, *, wait_offline: bool
    ) -> None:
        """Publish every batch (pipelined) and wait until every store settled."""
        tracker = self._tracker
        assert tracker is not None
        publishing = asyncio.create_task(
            _publish_all(link, prefix, plan, on_sent=self._sent, on_failed=self._failed),
            name="hq.push.publish",
        )
        publishing.add_done_callback(lambda _task: self._changed.set())
        try:
            while not (publishing.done() and tracker.settled(wait_offline=wait_offline)):
                await self._changed.wait()
                self._changed.clear()
                if self._on_progress is not None:
                    self._on_progress(tracker.progress())
                if publishing.done():
                    publishing.result()  # a bug in publishing is raised, not waited out
        finally:
            await _stop(publishing)
