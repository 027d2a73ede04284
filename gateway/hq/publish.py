"""Publishing price batches to many stores, and a fleet push's wait for their answers (the I/O
around :mod:`gateway.hq.fleet`). Used by :mod:`gateway.hq.push`.

- :func:`take_versions`: every target's next version, committed before anything is sent.
- :func:`publish_all`: every store's batch, built and signed on a worker thread when a publisher
  takes the store (the event loop keeps reading the stores' answers meanwhile), pipelined
  across the fleet, tried again after a dropped link.
- :class:`FleetRun`: feeds the tracker, reports progress, and asks the stores that stay quiet
  for their version (``resync``) — a receipt the broker dropped on the way (its queue for this
  client full) must not leave a store that applied looking behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from gateway.clock import SystemClock, isoformat_utc
from gateway.errors import LinkDownError, LinkError
from gateway.hq.fleet import FleetProgress, FleetPush
from gateway.hq.prices import PriceParts
from gateway.hq.tail import HqSettings
from gateway.store.database import Database
from gateway.sync.link import InboundMessage, MqttLink
from gateway.sync.signing import Signer

__all__ = ["FleetRun", "Plan", "new_link", "publish_all", "run_link", "stop", "take_versions"]

#: Publishers working through the fleet: enough to keep the link's window (at most 20 in
#: flight) full while some of them wait for their next store's batch to be built.
PUBLISHERS = 32
#: A store's batch is tried again after the link dropped (the same version and bytes: a
#: duplicate is a no-op at the store), this many times at most, once the link is back.
ATTEMPTS = 5
RETRY_PAUSE_S = 0.5
#: Publishing done and nothing heard for this long: the stores not settled are asked.
PROBE_QUIET_S = 5.0
PROBES_PER_STORE = 3
#: The retained states come right after the broker acknowledged the subscriptions (SUBACK):
#: once none came for this long after that (measured from the last one), a target without one
#: never connected to this broker.
RETAINED_QUIET_S = 1.0

_TAKE_VERSION = (
    "INSERT INTO hq_price_versions VALUES (?, ?, ?) ON CONFLICT (store) "
    "DO UPDATE SET version = excluded.version, pushed_at = excluded.pushed_at"
)


@dataclass(frozen=True, slots=True)
class Plan:
    """Every target's version, taken; its batch is built and signed only when its turn to be
    published comes (a thousand stores' batches of a big list never sit in memory at once)."""

    versions: dict[str, int]
    parts: PriceParts
    kind: Literal["full", "delta"]
    issued_at: datetime
    signer: Signer | None = None
    delete: Sequence[str] = ()
    promotions: Sequence[Mapping[str, Any]] = ()
    cancel_promotions: Sequence[str] = ()

    def messages(self, store: str) -> list[bytes]:
        return self.parts.messages(
            version=self.versions[store],
            kind=self.kind,
            issued_at=self.issued_at,
            # Versions are per store: a batch names exactly one store, so it can never be
            # replayed to another member of a group.
            stores=[store],
            delete=self.delete,
            promotions=self.promotions,
            cancel_promotions=self.cancel_promotions,
            signer=self.signer,
        )


async def take_versions(database: Database, targets: Sequence[str], at: datetime) -> dict[str, int]:
    """Every target's next version, taken (one transaction) before anything is sent: a push
    that fails half-way is re-done under new versions, never mixed into the old ones."""
    rows = await database.fetchall("SELECT store, version FROM hq_price_versions")
    last = {str(row["store"]): int(row["version"]) for row in rows}
    versions = {store: last.get(store, 0) + 1 for store in targets}
    stamp = isoformat_utc(at)
    await database.submit_atomic(
        [(_TAKE_VERSION, (store, version, stamp)) for store, version in versions.items()]
    )
    return versions


def new_link(settings: HqSettings) -> MqttLink:
    """A one-shot link for a push: its own client id and a clean session the broker forgets
    at disconnect (a persistent one would queue the fleet's receipts for nobody)."""
    token = secrets.token_hex(4)
    mqtt = settings.mqtt.model_copy(update={"client_id": f"storegw-hq-push-{token}"})
    return MqttLink(
        config=mqtt,
        store_id="+",  # every store's topic root: subscriptions take a wildcard
        boot=0,
        clock=SystemClock(),
        announce=False,
        session_expiry_s=0,
    )


async def run_link(link: MqttLink, settings: HqSettings, timeout_s: float) -> asyncio.Task[None]:
    task = asyncio.create_task(link.run(), name="hq.push.link")
    try:
        async with asyncio.timeout(timeout_s):
            await link.connected.wait()
    except TimeoutError:
        await stop(task)
        raise LinkDownError(
            f"no connection to {settings.mqtt.host}:{settings.mqtt.port} within {timeout_s:.0f} s"
        ) from None
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class Publisher(Protocol):
    """What publishing needs of the link (:class:`MqttLink`)."""

    @property
    def connected(self) -> asyncio.Event: ...

    async def publish(self, topic: str, payload: bytes) -> None: ...


async def publish_all(
    link: Publisher,
    prefix: str,
    plan: Plan,
    *,
    on_sent: Callable[[str, int], None] = lambda _store, _parts: None,
    on_failed: Callable[[str, str], None] | None = None,
) -> None:
    """Publish every store's batch, pipelined: publishers take the next store, have its batch
    built (one worker thread: signing a big list never stalls the event loop) and publish its
    parts in order; together they keep as many publishes in flight as the broker's Receive
    Maximum lets the link. ``on_sent(store, parts)`` after each part the broker took. With
    ``on_failed``, a store whose parts the link dropped is tried again once the link is back
    (at most ``ATTEMPTS`` times), and a store the broker refused, or that ran out of attempts,
    is reported there; without it the first failure is raised."""
    stores = iter(plan.versions)
    loop = asyncio.get_running_loop()

    async def publish(store: str, builder: ThreadPoolExecutor) -> None:
        messages = await loop.run_in_executor(builder, plan.messages, store)
        sent = 0
        for attempt in range(1, ATTEMPTS + 1):
            try:
                for message in messages[sent:]:
                    await link.publish(f"{prefix}{store}/down/prices", message)
                    sent += 1
                    on_sent(store, len(messages))
            except LinkDownError:
                if on_failed is None or attempt == ATTEMPTS:
                    raise
                await asyncio.sleep(RETRY_PAUSE_S)  # the link notices the drop meanwhile
                await link.connected.wait()
            else:
                return

    async def publisher(builder: ThreadPoolExecutor) -> None:
        for store in stores:
            try:
                await publish(store, builder)
            except LinkError as exc:
                if on_failed is None:
                    raise
                on_failed(store, str(exc))

    builder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hq-push-build")
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(PUBLISHERS, len(plan.versions))):
                group.create_task(publisher(builder))
    finally:
        builder.shutdown(wait=True, cancel_futures=True)


def resync_command(store: str, now: datetime) -> bytes:
    """``resync`` for one store, unsigned (read-only: every store takes it, whatever keys it
    pins) and without a response topic: the store answers on ``up/sync``."""
    token = secrets.token_hex(6)
    return json.dumps(
        {
            "v": 1,
            "type": "command",
            "id": f"push-{token}",
            "name": "resync",
            "args": {},
            "scope": {"stores": [store]},
            "issued_at": isoformat_utc(now),
            "valid_until": isoformat_utc(now + timedelta(minutes=2)),
        },
        separators=(",", ":"),
    ).encode()


class FleetRun:
    """A fleet push's I/O around its sans-IO tracker: messages in, publishes out, progress."""

    def __init__(
        self,
        on_progress: Callable[[FleetProgress], None] | None,
        *,
        probe_quiet_s: float = PROBE_QUIET_S,
        retained_quiet_s: float = RETAINED_QUIET_S,
    ) -> None:
        self._on_progress = on_progress
        self._probe_quiet_s = probe_quiet_s
        self._retained_quiet_s = retained_quiet_s
        self._retained_came = asyncio.Event()
        self._tracker: FleetPush | None = None
        self._early: list[tuple[str, bytes]] = []  # came before the batches were planned
        self._changed = asyncio.Event()
        self._probes: dict[str, int] = {}
        self.probed = 0

    def start(self, tracker: FleetPush) -> FleetPush:
        self._tracker = tracker
        for topic, payload in self._early:
            tracker.receive(topic, payload)
        self._early.clear()
        return tracker

    async def on_message(self, message: InboundMessage) -> None:
        if message.retain:
            self._retained_came.set()
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
        self, link: MqttLink, prefix: str, plan: Plan, *, wait_offline: bool
    ) -> None:
        """Publish every batch (pipelined) and wait until every store settled; once publishing
        is done, a quiet spell has the stores not settled asked for their version."""
        tracker = self._tracker
        assert tracker is not None
        publishing = asyncio.create_task(
            publish_all(link, prefix, plan, on_sent=self._sent, on_failed=self._failed),
            name="hq.push.publish",
        )
        publishing.add_done_callback(lambda _task: self._changed.set())
        retained = asyncio.create_task(self._await_retained(link, tracker), name="hq.push.retained")
        try:
            while not (publishing.done() and tracker.settled(wait_offline=wait_offline)):
                try:
                    async with asyncio.timeout(self._probe_quiet_s if publishing.done() else None):
                        await self._changed.wait()
                except TimeoutError:
                    await self._probe(link, prefix, tracker)
                    continue
                self._changed.clear()
                if self._on_progress is not None:
                    self._on_progress(tracker.progress())
                if publishing.done():
                    publishing.result()  # a bug in publishing is raised, not waited out
        finally:
            await stop(retained)
            await stop(publishing)

    async def _await_retained(self, link: MqttLink, tracker: FleetPush) -> None:
        """Tell the tracker once the retained states stopped coming: the broker acknowledged
        the subscriptions (it sends the retained messages right after), then
        ``retained_quiet_s`` passed without one."""
        await link.subscribed.wait()
        while True:
            self._retained_came.clear()
            try:
                async with asyncio.timeout(self._retained_quiet_s):
                    await self._retained_came.wait()
            except TimeoutError:
                break
        tracker.retained_over()
        self._changed.set()

    async def _probe(self, link: MqttLink, prefix: str, tracker: FleetPush) -> None:
        """Ask the stores online but not settled for their version (``up/sync``), each a few
        times at most."""
        stores = [s for s in tracker.to_probe() if self._probes.get(s, 0) < PROBES_PER_STORE]
        now = SystemClock().utc_now()

        async def ask(store: str) -> None:
            with contextlib.suppress(LinkError):  # the next quiet spell asks again
                await link.publish(f"{prefix}{store}/down/cmd/resync", resync_command(store, now))
                self._probes[store] = self._probes.get(store, 0) + 1
                self.probed += 1

        async with asyncio.TaskGroup() as group:
            for store in stores:
                group.create_task(ask(store))
