"""The uplink: drains the outbox to HQ in envelopes, pipelined, and honours HQ's custody acks.

Per stream, a cursor starts at HQ's watermark on every (re)connection, so everything sent but
not yet acknowledged is sent again (HQ de-duplicates on store, stream, epoch, seq). Envelopes
of a stream are published concurrently up to the broker's window; PUBACKs advance ``sent_seq``
in order. Rows are deleted only when HQ's watermark on ``down/ack`` covers them, or on PUBACK
in ``custody = "broker"`` mode. If HQ's watermark does not pass a PUBACKed envelope within
``ack_timeout_s`` (:class:`CustodyTimer`), the stream is rewound to the watermark and re-sent;
while HQ stays silent the wait doubles, ``_ACK_TIMEOUT_DOUBLINGS`` times at most (an HQ down
for hours does not get the same window re-sent twice a minute, filling the broker's queue for
it with duplicates). A refused publish parks its stream with a backoff; the other streams keep
flowing.

Before a seq leaves, the outbox's high-water file must cover it (:meth:`Outbox.mark_leaving`).
HQ acknowledging a seq beyond a stream's head means its database went back in time (restored
from a copy without its high-water file): the stream starts a new epoch
(:meth:`Outbox.start_new_epoch`), its buffered events re-sent from seq 1, and the warning
``outbox.epoch:{stream}`` is raised until HQ holds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gateway.alerts import Alerts, Severity
from gateway.backoff import Backoff
from gateway.clock import Clock, isoformat_utc
from gateway.errors import (
    LinkDownError,
    MalformedMessageError,
    PublishRefusedError,
    StorageError,
)
from gateway.store.outbox import EpochChange, Outbox
from gateway.sync.config import MqttConfig
from gateway.sync.inbound import load_json_object
from gateway.sync.link import InboundMessage, MqttLink
from gateway.wire.encoding import WireBatch, pack_wire_batch

__all__ = [
    "Custody",
    "CustodyTimer",
    "RateLimiter",
    "StreamCursor",
    "Uplink",
    "UplinkSettings",
    "connect_outbox",
]

_LOGGER = logging.getLogger(__name__)

#: Alert key prefix for a stream that started a new epoch (its database went back in time).
EPOCH_ALERT = "outbox.epoch"


class Custody(StrEnum):
    HQ = "hq"  # delete on HQ's watermark (end-to-end custody)
    BROKER = "broker"  # delete on PUBACK: only for brokers that never lose queued messages


@dataclass(frozen=True, slots=True)
class UplinkSettings:
    custody: Custody = Custody.HQ
    max_events_per_message: int = 500
    max_message_bytes: int = 128 * 1024
    ack_timeout_s: float = 30.0
    messages_per_second: float | None = 200.0  # catch-up rate limit; None lifts it
    # Envelopes of a stream sent but not yet covered by HQ's watermark. Keeps the broker's
    # queue towards HQ short: mosquitto drops QoS 1 messages for a subscriber beyond
    # max_queued_messages (1000 by default), which would cost an ack timeout to repair.
    hq_window_messages: int = 100

    @classmethod
    def from_config(cls, mqtt: MqttConfig) -> UplinkSettings:
        return cls(
            custody=Custody(mqtt.custody),
            max_events_per_message=mqtt.max_events_per_message,
            max_message_bytes=mqtt.max_message_bytes,
            ack_timeout_s=mqtt.ack_timeout_s,
            messages_per_second=mqtt.catchup_messages_per_s,
            hq_window_messages=mqtt.hq_window_messages,
        )


class RateLimiter:
    """Token bucket (sans-IO): ``delay()`` says how long to wait before the next message."""

    def __init__(self, rate: float | None, clock: Clock, burst: float = 20.0) -> None:
        self._rate = rate
        self._clock = clock
        self._burst = burst
        self._tokens = burst
        self._at = clock.monotonic()

    def delay(self) -> float:
        if self._rate is None:
            return 0.0
        now = self._clock.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self._rate


#: After a storage failure the uplink starts over from the watermarks this much later.
_STORAGE_RETRY_S = 1.0

#: The ack timeout doubles while HQ stays silent, this many times at most (to 2 min at the
#: default 30 s: an HQ back without its broker queue waits at most that long for the window).
_ACK_TIMEOUT_DOUBLINGS = 2


class CustodyTimer:
    """How long one stream has waited for HQ's watermark (sans-IO: times come from the caller).

    Only envelopes the broker accepted wait for HQ, each from its own PUBACK: an envelope
    expires ``timeout_s`` after the later of its PUBACK and the last move of the watermark
    (an envelope behind others waits while HQ works through them). A stream idle for hours,
    or a fresh connection, therefore starts no clock until its next PUBACK; nor does an
    envelope whose PUBACK is settled after HQ's watermark already covers it (the two race).
    Each expiry doubles the timeout (``max_doublings`` times at most); a moving watermark
    resets it.
    """

    def __init__(self, timeout_s: float, *, max_doublings: int = _ACK_TIMEOUT_DOUBLINGS) -> None:
        self._base_s = timeout_s
        self._max_doublings = max_doublings
        self._doublings = 0  # expiries in a row without the watermark moving
        self._watermark_moved_at = float("-inf")
        self._watermark = 0  # the highest seq HQ acknowledged
        # (last seq, PUBACK time) of envelopes beyond the watermark, in PUBACK order.
        self._pubacked: deque[tuple[int, float]] = deque()

    @property
    def timeout_s(self) -> float:
        return self._base_s * (1 << self._doublings)

    def pubacked(self, seq_to: int, now: float) -> None:
        """The broker accepted the envelope ending at ``seq_to``."""
        if seq_to > self._watermark:  # else HQ holds it already: nothing to wait for
            self._pubacked.append((seq_to, now))

    def watermark_moved(self, seq: int, now: float) -> None:
        """HQ's watermark moved up to ``seq``: the envelopes it covers wait no longer."""
        self._watermark_moved_at = now
        self._watermark = max(self._watermark, seq)
        self._doublings = 0
        # Not always a prefix: envelopes sent before a rewind may be PUBACKed after it.
        self._pubacked = deque(entry for entry in self._pubacked if entry[0] > seq)

    def expired(self, now: float) -> bool:
        """True when the oldest envelope waiting for HQ has waited longer than the timeout."""
        if not self._pubacked:
            return False
        waiting_since = max(self._pubacked[0][1], self._watermark_moved_at)
        return now - waiting_since > self.timeout_s

    def rewound(self) -> None:
        """The stream goes again from the watermark: the re-sent envelopes start their own
        waits (at their PUBACKs), each one twice as long while HQ stays silent."""
        self._pubacked.clear()
        self._doublings = min(self._doublings + 1, self._max_doublings)


@dataclass(slots=True)
class StreamCursor:
    """Sending state of one stream for the current connection."""

    stream: str
    next_after: int  # highest seq already handed to the link
    acked_seq: int
    sent_seq: int
    timer: CustodyTimer
    parked_until: float = 0.0
    caught_up: bool = False  # nothing left to read until the outbox says otherwise
    backoff: Backoff = field(default_factory=lambda: Backoff(5.0, 300.0))
    in_flight: deque[tuple[int, asyncio.Future[PublishRefusedError | None]]] = field(
        default_factory=deque
    )
    awaiting_hq: deque[int] = field(default_factory=deque)  # last seqs of unacked envelopes


class Uplink:
    def __init__(
        self,
        *,
        outbox: Outbox,
        link: MqttLink,
        store_id: str,
        boot: int,
        clock: Clock,
        settings: UplinkSettings | None = None,
        alerts: Alerts | None = None,
    ) -> None:
        self._alerts = alerts
        self._alerted: set[str] = set()
        self._outbox = outbox
        self._link = link
        self._store_id = store_id
        self._boot = boot
        self._clock = clock
        self.settings = settings or UplinkSettings()
        self._cursors: dict[str, StreamCursor] = {}
        self._limiter = RateLimiter(self.settings.messages_per_second, clock)
        self.last_ack: dict[str, Any] | None = None
        self.parked: dict[str, str] = {}
        self._hq_ahead: dict[str, tuple[str, int]] = {}  # stream -> HQ's (epoch, seq) beyond head
        self._epoch_alerts: dict[str, tuple[str, int]] = {}  # stream -> (epoch, seq HQ must ack)
        self._bookkeeping_failing = False  # a sent/acked mark failed to commit (logged once)
        self._storage_error: str | None = None  # the last storage failure of run() (logged once)
        link.subscribe("down/ack", self._on_ack)

    async def run(self) -> None:
        """Send while connected; start over from the watermarks after every reconnect, and
        after a storage failure (a full disk refusing an alert or an epoch change): the
        events stay in the outbox, the task goes on."""
        self._load_epoch_alerts()
        while True:
            pause = 0.1
            try:
                await self._report_epoch_changes()
                await self._link.connected.wait()
                await self._serve_connection()
            except* LinkDownError:
                # Python 3.11's TaskGroup can report its children's errors *instead of* a
                # cancellation that arrived meanwhile: never swallow a stop along with them.
                _raise_if_cancelling()
                _LOGGER.debug("uplink paused: link down")
                self._storage_error = None  # a connection ended by the link, not storage
            except* StorageError as failed:
                _raise_if_cancelling()
                error = str(failed.exceptions[0])
                if error != self._storage_error:
                    _LOGGER.warning("uplink: %s; starting over from the watermarks", error)
                self._storage_error = error
                pause = _STORAGE_RETRY_S
            await asyncio.sleep(pause)

    async def _serve_connection(self) -> None:
        await self._load_cursors()
        async with asyncio.TaskGroup() as group:
            while self._link.connected.is_set():
                self._outbox.appended.clear()
                if self._hq_ahead:
                    await self._start_new_epochs()
                for stream in self._outbox.take_appended_streams():
                    if stream in self._cursors:
                        self._cursors[stream].caught_up = False
                progressed = await self._send_round(group)
                await self._settle()
                await self._report_parked_streams()
                await self._report_epoch_changes()
                if not progressed:
                    # Idle costs nothing: no reads until an append, a PUBACK or a timer.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1.0):
                            await self._outbox.appended.wait()
                self._check_ack_timeouts()
            raise LinkDownError("link lost")

    async def _load_cursors(self) -> None:
        self._cursors = {}
        for state in await self._outbox.states():
            start = state.sent_seq if self.settings.custody is Custody.BROKER else state.acked_seq
            self._cursors[state.stream] = self._new_cursor(
                state.stream, start, state.acked_seq, state.sent_seq
            )

    def _new_cursor(self, stream: str, start: int, acked_seq: int, sent_seq: int) -> StreamCursor:
        return StreamCursor(
            stream, start, acked_seq, sent_seq, CustodyTimer(self.settings.ack_timeout_s)
        )

    async def _start_new_epochs(self) -> None:
        """Streams HQ acknowledged beyond their head start a new epoch; their envelopes still
        in flight belong to the old one and are no longer tracked."""
        ahead, self._hq_ahead = self._hq_ahead, {}
        for stream, (epoch, seq) in ahead.items():
            if not await self._outbox.beyond_head(stream, epoch, seq):
                continue  # moved on already
            await self._outbox.start_new_epoch(
                stream,
                f"HQ holds seqs up to {seq} of epoch {epoch}, which this database never "
                "reached: it is older than what was sent (restored from a copy, or its WAL "
                "was lost)",
            )
            self._cursors[stream] = self._new_cursor(stream, 0, 0, 0)

    def _load_epoch_alerts(self) -> None:
        """Epoch alerts still active from an earlier run: cleared once HQ holds the events."""
        if self._alerts is None:
            return
        for alert in self._alerts.active():
            stream = alert.key.removeprefix(f"{EPOCH_ALERT}:")
            if stream != alert.key:
                epoch, count = alert.details.get("epoch"), alert.details.get("resequenced")
                if isinstance(epoch, str) and isinstance(count, int):
                    self._epoch_alerts[stream] = (epoch, max(count, 1))

    async def _report_epoch_changes(self) -> None:
        """One warning per stream that started a new epoch, cleared when HQ's watermark in
        the new epoch covers the events re-sequenced into it."""
        for change in self._outbox.take_epoch_changes():
            self._epoch_alerts[change.stream] = (change.new_epoch, max(change.resequenced, 1))
            if self._alerts is not None:
                await self._raise_epoch_alert(self._alerts, change)
        for stream, (epoch, needed) in list(self._epoch_alerts.items()):
            cursor = self._cursors.get(stream)
            if epoch != self._outbox.epoch_of(stream):
                del self._epoch_alerts[stream]  # another change replaced it
            elif cursor is not None and cursor.acked_seq >= needed:
                del self._epoch_alerts[stream]
                if self._alerts is not None:
                    await self._alerts.clear(
                        f"{EPOCH_ALERT}:{stream}", f"HQ holds epoch {epoch} up to seq {needed}"
                    )

    @staticmethod
    async def _raise_epoch_alert(alerts: Alerts, change: EpochChange) -> None:
        key = f"{EPOCH_ALERT}:{change.stream}"
        details = {
            "stream": change.stream,
            "old_epoch": change.old_epoch,
            "epoch": change.new_epoch,
            "resequenced": change.resequenced,
            "reason": change.reason,
        }
        resent = (
            f"{change.resequenced} buffered event(s) re-sent as its seqs 1..{change.resequenced} "
            "(HQ may get some of them twice, with the same ids)"
            if change.resequenced
            else "nothing buffered to re-send"
        )
        message = (
            f"{change.stream}: the database went back in time; new epoch {change.new_epoch}, "
            f"{resent}"
        )
        if not await alerts.raise_(key, Severity.WARNING, message, details):
            await alerts.update_details(key, details)  # a later change while still active

    async def _send_round(self, group: asyncio.TaskGroup) -> bool:
        progressed = False
        now = self._clock.monotonic()
        for cursor in self._cursors.values():
            if (
                cursor.caught_up
                or cursor.parked_until > now
                or len(cursor.in_flight) >= self._link.stats.receive_maximum
                or (
                    self.settings.custody is Custody.HQ
                    and len(cursor.awaiting_hq) >= self.settings.hq_window_messages
                )
            ):
                continue
            batch = await self._outbox.read_wire(
                cursor.stream,
                after_seq=cursor.next_after,
                max_events=self.settings.max_events_per_message,
                max_bytes=self.settings.max_message_bytes,
            )
            if batch is None:
                cursor.caught_up = True
                continue
            delay = self._limiter.delay()
            if delay:
                await asyncio.sleep(delay)
            await self._outbox.mark_leaving(cursor.stream, batch.seq_to)
            self._publish(group, cursor, batch)
            progressed = True
        return progressed

    def _publish(self, group: asyncio.TaskGroup, cursor: StreamCursor, batch: WireBatch) -> None:
        payload = pack_wire_batch(
            store=self._store_id,
            epoch=self._outbox.epoch_of(cursor.stream),
            boot=self._boot,
            batch=batch,
            sent_at=self._clock.utc_now(),
        )
        topic = f"{self._link.topic_root}up/{cursor.stream}"
        task = group.create_task(
            self._publish_one(topic, payload), name=f"uplink.publish[{cursor.stream}]"
        )
        # A PUBACK frees a window slot: wake the send loop (the outbox's event means "work").
        task.add_done_callback(lambda _: self._outbox.appended.set())
        cursor.in_flight.append((batch.seq_to, task))
        cursor.awaiting_hq.append(batch.seq_to)
        cursor.next_after = batch.seq_to

    async def _publish_one(self, topic: str, payload: bytes) -> PublishRefusedError | None:
        """A refusal is an answer for its stream, not a failure of the connection's tasks."""
        try:
            await self._link.publish(topic, payload)
        except PublishRefusedError as refused:
            return refused
        return None

    async def _settle(self) -> None:
        """Advance sent marks over PUBACKed envelopes, in order per stream."""
        now = self._clock.monotonic()
        for cursor in self._cursors.values():
            highest = None
            while cursor.in_flight and cursor.in_flight[0][1].done():
                seq, task = cursor.in_flight.popleft()
                error = task.exception()
                if error is not None:
                    raise error  # the link went down: start over from the watermarks
                refused = task.result()
                if refused is not None:
                    self._park(cursor, refused)
                    cursor.in_flight.clear()
                    break
                highest = seq
                cursor.timer.pubacked(seq, now)
            if highest is not None:
                self.parked.pop(cursor.stream, None)
                cursor.backoff.reset()
                cursor.sent_seq = max(cursor.sent_seq, highest)
                if self.settings.custody is Custody.BROKER:
                    self._track(await self._outbox.release_sent(cursor.stream, highest))
                else:
                    self._track(self._outbox.mark_sent(cursor.stream, highest))

    def _park(self, cursor: StreamCursor, error: PublishRefusedError) -> None:
        delay = cursor.backoff.next_delay()
        cursor.parked_until = self._clock.monotonic() + delay
        cursor.next_after = max(cursor.acked_seq, min(cursor.sent_seq, cursor.next_after))
        cursor.awaiting_hq.clear()
        cursor.caught_up = False
        self.parked[cursor.stream] = str(error)
        _LOGGER.error("stream %s parked for %.0f s: %s", cursor.stream, delay, error)

    async def _report_parked_streams(self) -> None:
        """One alert per parked stream, cleared when the broker accepts it again."""
        if self._alerts is None:
            return
        for stream, error in list(self.parked.items()):
            if stream not in self._alerted:
                self._alerted.add(stream)
                await self._alerts.raise_(
                    f"uplink.refused:{stream}",
                    Severity.CRITICAL,
                    f"broker refuses stream {stream}; events stay buffered: {error}",
                )
        for stream in list(self._alerted - set(self.parked)):
            self._alerted.discard(stream)
            await self._alerts.clear(f"uplink.refused:{stream}", "broker accepts it again")

    def _check_ack_timeouts(self) -> None:
        if self.settings.custody is Custody.BROKER:
            return
        now = self._clock.monotonic()
        for cursor in self._cursors.values():
            if cursor.timer.expired(now):
                _LOGGER.warning(
                    "no HQ ack for %s beyond seq %d in %.0f s: re-sending from the watermark",
                    cursor.stream,
                    cursor.acked_seq,
                    cursor.timer.timeout_s,
                )
                cursor.timer.rewound()
                cursor.next_after = cursor.acked_seq
                cursor.awaiting_hq.clear()
                cursor.caught_up = False

    async def _on_ack(self, message: InboundMessage) -> None:
        """Take HQ's watermark; an unreadable ack raises MalformedMessageError (the link
        acknowledges it and counts it as malformed)."""
        stream, epoch, seq = _read_ack(message.payload)
        released = await self._outbox.acknowledge(stream, epoch, seq)
        if released is None:
            if await self._outbox.beyond_head(stream, epoch, seq):
                # HQ holds seqs this database never reached: the send loop starts a new epoch.
                self._hq_ahead[stream] = (epoch, seq)
                self._outbox.appended.set()
                return
            _LOGGER.debug(
                "ignoring ack %s/%s/%d (other epoch, stream or beyond head)", stream, epoch, seq
            )
            return
        self._track(released)
        self.last_ack = {"stream": stream, "seq": seq, "at": isoformat_utc(self._clock.utc_now())}
        cursor = self._cursors.get(stream)
        if cursor is not None and seq > cursor.acked_seq:
            cursor.acked_seq = seq
            cursor.timer.watermark_moved(seq, self._clock.monotonic())
            cursor.next_after = max(cursor.next_after, seq)
            while cursor.awaiting_hq and cursor.awaiting_hq[0] <= seq:
                cursor.awaiting_hq.popleft()
            self._outbox.appended.set()  # the window may have room again

    def _track(self, future: asyncio.Future[Any]) -> None:
        # Bookkeeping writes ride the group commit (no task, nothing to await); a failure only
        # means rows are re-sent later, so it is logged — once until one succeeds again (a
        # full disk fails every one of them: one per envelope and per ack).
        future.add_done_callback(self._bookkeeping_done)

    def _bookkeeping_done(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is None:
            if self._bookkeeping_failing:
                self._bookkeeping_failing = False
                _LOGGER.info("outbox bookkeeping works again")
        elif not self._bookkeeping_failing:
            self._bookkeeping_failing = True
            _LOGGER.error(
                "outbox bookkeeping failed: %s (events may be sent again; not logged again "
                "until it works)",
                error,
            )


def _raise_if_cancelling() -> None:
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from None


def _read_ack(payload: bytes) -> tuple[str, str, int]:
    """``{stream, epoch, seq}`` of a ``down/ack`` (docs/protocol.md): strings and an integer
    seq in 1..2^63-1, or MalformedMessageError (other fields are ignored)."""
    ack = load_json_object(payload)
    stream, epoch, seq = ack.get("stream"), ack.get("epoch"), ack.get("seq")
    if not isinstance(stream, str) or not isinstance(epoch, str):
        raise MalformedMessageError("an ack needs stream and epoch (strings)")
    if type(seq) is not int or not 1 <= seq < 2**63:
        raise MalformedMessageError(f"an ack's seq must be an integer 1..2^63-1, not {seq!r:.40}")
    return stream, epoch, seq


def connect_outbox(
    outbox: Outbox,
    *,
    config: MqttConfig,
    store_id: str,
    boot: int,
    clock: Clock,
    settings: UplinkSettings | None = None,
    alerts: Alerts | None = None,
) -> tuple[MqttLink, Uplink]:
    """The link and the uplink draining ``outbox`` through it; run both ``run()``s."""
    link = MqttLink(config=config, store_id=store_id, boot=boot, clock=clock)
    uplink = Uplink(
        outbox=outbox,
        link=link,
        store_id=store_id,
        boot=boot,
        clock=clock,
        settings=settings or UplinkSettings.from_config(config),
        alerts=alerts,
    )
    return link, uplink
