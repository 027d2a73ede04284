"""One virtual store: the gateway's real MQTT link, events built with the real wire code,
custody from HQ's acks, price batches verified and answered with receipts.

What is real: :class:`~gateway.sync.link.MqttLink` (MQTT 5, persistent session, retained
birth and last will, manual acks, reconnects with capped exponential backoff and full jitter,
the broker's Receive Maximum), the event models and their encoding
(:mod:`gateway.wire.encoding`: stored event objects, wire batches, envelopes), the custody
timer of the uplink, and the price downlink's verifier and parser. What is simulated: the
drivers (events are drawn at the store's rate, Poisson per group commit) and the SQLite
outbox, kept in memory (:mod:`tests.support.fleet.custody`) so a thousand stores fit on one
box; the store side's disk is measured by bench/uplink.py and bench/drain.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
from collections.abc import Callable

from gateway.clock import Clock, isoformat_utc
from gateway.errors import LinkError, MalformedMessageError, PublishRefusedError
from gateway.sync.config import MqttConfig
from gateway.sync.inbound import load_json_object
from gateway.sync.link import InboundMessage, MqttLink
from gateway.sync.signing import Verifier
from gateway.wire.dwell import ZoneExited
from gateway.wire.encoding import encode_events, event_objects, pack_wire_batch
from gateway.wire.envelope import EventBody
from gateway.wire.prices import PriceApplied
from gateway.wire.registry import WIRE_EVENTS
from gateway.wire.stock import StockChanged
from tests.support.fleet.custody import LatencyHistogram, StreamOutbox
from tests.support.fleet.mix import poisson
from tests.support.fleet.prices import PriceReceiver

__all__ = ["StoreSettings", "VirtualStore"]

_DWELL_SHARE = 0.1  # of a store's events: zone exits; the rest stock changes
_RESYNC_INTERVAL_S = 60.0  # as [downlink] resync_interval_s


class StoreSettings:
    """What every store of a run shares."""

    def __init__(
        self,
        *,
        mqtt: MqttConfig,
        clock: Clock,
        verifier: Verifier,
        latencies: LatencyHistogram,
        commit_interval_s: float = 1.0,
        ack_timeout_s: float = 30.0,
        max_events_per_message: int = 500,
        hq_window_messages: int = 100,
    ) -> None:
        self.mqtt = mqtt
        self.clock = clock
        self.verifier = verifier
        self.latencies = latencies
        self.commit_interval_s = commit_interval_s
        self.ack_timeout_s = ack_timeout_s
        self.max_events_per_message = max_events_per_message
        self.hq_window_messages = hq_window_messages
        self.rate_factor = 1.0  # changed by the worker for all its stores at once
        self.producing = True
        self.holding = False  # True: accept events but send nothing (HQ unreachable)


class VirtualStore:
    def __init__(
        self, store_id: str, events_per_s: float, settings: StoreSettings, rng: random.Random
    ) -> None:
        self.store_id = store_id
        self.events_per_s = events_per_s
        self._settings = settings
        self._clock = settings.clock
        self._rng = rng
        self.epoch = secrets.token_hex(8)
        self.link = MqttLink(config=settings.mqtt, store_id=store_id, boot=1, clock=self._clock)
        self.streams = {
            name: StreamOutbox(
                name, self.epoch, settings.ack_timeout_s, latencies=settings.latencies
            )
            for name in ("stock", "dwell", "receipts")
        }
        self.prices = PriceReceiver(store_id, settings.verifier, self._clock)
        self._wake = asyncio.Event()
        self._publishing: set[asyncio.Task[None]] = set()
        self._last_sync = float("-inf")
        self._gap = False
        self.resent_windows = 0  # ack timeouts: the stream went again from the watermark
        self.refused_publishes = 0
        self.envelopes = 0  # envelopes the broker accepted (PUBACK)
        # Set by the worker (broker restarted): the first ack after it, per store.
        self.mark_at: float | None = None
        self.reconnected_at: float | None = None
        self.flowing_at: float | None = None
        # Price versions: when applied here, and when HQ acknowledged the price.applied receipt.
        self.applied_at: dict[int, float] = {}
        self.receipt_acked_at: dict[int, float] = {}
        self._applied_receipts: dict[int, int] = {}  # receipt seq -> version
        self.link.subscribe("down/ack", self._on_ack)
        self.link.subscribe("down/prices", self._on_prices)

    # --- running ------------------------------------------------------------------------

    async def run(self, *, produce: bool = True, first_events: int = 0) -> None:
        """Connect and stay connected; produce at the store's rate (``produce``), after
        ``first_events`` stock events accepted at once (a birth storm's one envelope)."""
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.link.run(), name=f"fleet.link[{self.store_id}]")
                group.create_task(self._send(), name=f"fleet.send[{self.store_id}]")
                if first_events:
                    self._accept("stock", self._stock_events(first_events))
                if produce:
                    group.create_task(self._produce(), name=f"fleet.produce[{self.store_id}]")
        finally:
            for task in self._publishing:
                task.cancel()

    async def _produce(self) -> None:
        interval = self._settings.commit_interval_s
        await asyncio.sleep(self._rng.uniform(0, interval))  # stores are not in step
        while True:
            if self._settings.producing:
                mean = self.events_per_s * self._settings.rate_factor * interval
                stock = poisson(self._rng, mean * (1 - _DWELL_SHARE))
                dwell = poisson(self._rng, mean * _DWELL_SHARE)
                if stock:
                    self._accept("stock", self._stock_events(stock))
                if dwell:
                    self._accept("dwell", self._dwell_events(dwell))
            await asyncio.sleep(interval)

    def _accept(self, stream: str, events: list[EventBody]) -> None:
        """One group commit: the events' stored objects, built as the outbox builds them."""
        _name, type_json = WIRE_EVENTS.type_of(events[0])
        ids = secrets.token_hex(8 * len(events))
        texts = event_objects(
            [ids[at : at + 16] for at in range(0, len(ids), 16)],
            isoformat_utc(self._clock.utc_now()),
            type_json,
            encode_events(events),
        )
        self.streams[stream].accept(texts, self._clock.monotonic())
        self._wake.set()

    def _stock_events(self, count: int) -> list[EventBody]:
        before = count + self._rng.randint(0, 60)
        return [
            StockChanged.validated(
                {
                    "slot": f"slot-{self._rng.randint(1, 400)}",
                    "sku": f"40063813{self._rng.randint(10000, 99999)}",
                    "kind": "pick",
                    "before": before - n,
                    "after": before - n - 1,
                    "delta": -1,
                    "confidence": 0.98,
                    "grams": -251.3,
                }
            )
            for n in range(count)
        ]

    def _dwell_events(self, count: int) -> list[EventBody]:
        now = self._clock.utc_now()
        stamp = isoformat_utc(now)
        return [
            ZoneExited.validated(
                {
                    "tag": f"cart-{self._rng.randint(1, 200)}",
                    "zone": "produce",
                    "entered_at": stamp,
                    "exited_at": stamp,
                    "dwell_s": 72.4,
                    "sightings": 61,
                }
            )
            for _ in range(count)
        ]

    async def _send(self) -> None:
        """The uplink: from HQ's watermark on every connection, a window of envelopes per
        stream towards HQ, ack timeouts rewinding to the watermark."""
        settings = self._settings
        while True:
            await self.link.connected.wait()
            connection = self.link.stats.connected_since
            if self.mark_at is not None and self.reconnected_at is None:
                self.reconnected_at = self._clock.monotonic()
            for stream in self.streams.values():
                stream.rewind()
            while self.link.connected.is_set() and self.link.stats.connected_since == connection:
                self._wake.clear()
                for stream in () if settings.holding else self.streams.values():
                    while True:
                        batch = stream.next_batch(
                            settings.max_events_per_message, settings.hq_window_messages
                        )
                        if batch is None:
                            break
                        payload = pack_wire_batch(
                            store=self.store_id,
                            epoch=self.epoch,
                            boot=1,
                            batch=batch,
                            sent_at=self._clock.utc_now(),
                        )
                        self._start_publish(stream, payload, batch.seq_to)
                now = self._clock.monotonic()
                for stream in self.streams.values():
                    if stream.check_timeout(now):
                        self.resent_windows += 1
                        self._wake.set()
                if self._gap and now - self._last_sync >= _RESYNC_INTERVAL_S:
                    self._announce_gap()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._wake.wait()

    def _start_publish(self, stream: StreamOutbox, payload: bytes, seq_to: int) -> None:
        topic = f"{self.link.topic_root}up/{stream.stream}"
        task = asyncio.create_task(self._publish(stream, topic, payload, seq_to))
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    async def _publish(self, stream: StreamOutbox, topic: str, payload: bytes, seq: int) -> None:
        try:
            await self.link.publish(topic, payload)
        except PublishRefusedError:
            self.refused_publishes += 1  # an ACL refusal: the events wait (bad-input case)
            return
        except LinkError:  # the connection went: the next one starts from the watermark
            return
        self.envelopes += 1
        stream.pubacked(seq, self._clock.monotonic())

    def wake(self, *, rewind: bool = False) -> None:
        """Look at the streams now (the fleet's settings changed); ``rewind``: send again
        everything HQ has not acknowledged, as after a reconnect."""
        if rewind:
            for stream in self.streams.values():
                stream.rewind()
        self._wake.set()

    def set_ack_timeout(self, seconds: float) -> None:
        now = self._clock.monotonic()
        for stream in self.streams.values():
            stream.set_ack_timeout(seconds, now)

    # --- from HQ ------------------------------------------------------------------------

    async def _on_ack(self, message: InboundMessage) -> None:
        ack = load_json_object(message.payload)
        stream_name, epoch, seq = ack.get("stream"), ack.get("epoch"), ack.get("seq")
        stream = self.streams.get(stream_name) if isinstance(stream_name, str) else None
        if stream is None or not isinstance(epoch, str) or type(seq) is not int:
            raise MalformedMessageError(f"not an ack: {message.payload[:80]!r}")
        now = self._clock.monotonic()
        if not stream.acknowledge(epoch, seq, now):
            return
        self._wake.set()
        if (
            self.reconnected_at is not None
            and self.flowing_at is None
            and stream.stream != "receipts"
        ):
            self.flowing_at = now
        if stream.stream == "receipts":
            for receipt_seq in [s for s in self._applied_receipts if s <= seq]:
                version = self._applied_receipts.pop(receipt_seq)
                self.receipt_acked_at.setdefault(version, now)

    async def _on_prices(self, message: InboundMessage) -> None:
        verdict = self.prices.receive(message.payload)
        now = self._clock.monotonic()
        receipts = self.streams["receipts"]
        for receipt in verdict.receipts:
            self._accept("receipts", [receipt])  # type: ignore[list-item]
            if isinstance(receipt, PriceApplied):
                self.applied_at.setdefault(receipt.version, now)
                self._applied_receipts[receipts.head] = receipt.version
        self._gap = bool(self.prices.held_versions)
        if verdict.announce_gap:
            self._announce_gap()

    def _announce_gap(self) -> None:
        self._last_sync = self._clock.monotonic()
        task = asyncio.create_task(
            self.link.publish(f"{self.link.topic_root}up/sync", self.prices.sync_request())
        )
        self._publishing.add(task)
        task.add_done_callback(_forget_failure(self._publishing))

    # --- figures ------------------------------------------------------------------------

    @property
    def generated(self) -> int:
        return sum(stream.head for stream in self.streams.values())

    @property
    def acked(self) -> int:
        return sum(stream.acked_events for stream in self.streams.values())

    @property
    def backlog(self) -> int:
        return sum(stream.backlog for stream in self.streams.values())

    def summary(self) -> dict[str, object]:
        """What HQ must hold from this store: per stream, epoch and the last seq."""
        return {
            "store": self.store_id,
            "streams": {
                name: {"epoch": stream.epoch, "head": stream.head, "acked": stream.acked}
                for name, stream in self.streams.items()
            },
            "resent_windows": self.resent_windows,
        }


def _forget_failure(tasks: set[asyncio.Task[None]]) -> Callable[[asyncio.Task[None]], None]:
    def done(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        if not task.cancelled():
            task.exception()  # a resync request lost with its connection: asked again later

    return done
