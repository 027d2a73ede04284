"""The MQTT link: paho-mqtt 2.x driven by the asyncio event loop (no paho thread).

paho's socket callbacks register the socket with ``loop.add_reader/add_writer``; a task calls
``loop_misc()`` every second for keepalive. The blocking ``connect()`` (DNS, TCP, TLS) runs on a
private one-thread executor that is shut down with the link, so nothing outlives it.

Guarantees the uplink relies on:

- MQTT v5, persistent session (``clean_start=False`` + session expiry), manual acks for
  downlink messages: a message is acknowledged only after its handler returned — or refused
  it (raised DownlinkError, e.g. MalformedMessageError) or failed unexpectedly: every inbound
  message ends in an ack, reported to :attr:`MqttLink.on_refused`, so no message can hold one
  of the broker's in-flight slots for good. Only a storage or link failure leaves it
  unacknowledged (nothing was committed): the link hands it to its handler again, with a
  capped backoff, until it is taken and acknowledged — and the broker delivers it again
  should a new session begin first. Left for a next session only, some twenty of them (a
  full disk during a price push) would cut the store off from HQ on a healthy connection.
- Retained birth ``{online: true, boot}`` on ``state``, the same topic as retained last will
  ``{online: false, boot}``.
- TLS on by default with the broker certificate verified; plaintext only when the config
  explicitly allows it. Never a fallback.
- paho's in-memory queue is never a second source of truth: it is dropped on every connect and
  :meth:`MqttLink.publish` refuses to publish while disconnected.
- Each publish resolves on its own PUBACK; a failure reason code raises PublishRefusedError;
  a dropped connection fails every outstanding publish with LinkDownError.
- Reconnects use capped exponential backoff with full jitter; every failure of a connection
  (refused, TLS, out of file descriptors, a library error) is retried, its reason kept in
  :attr:`MqttLink.stats` (``storegw status``) and logged once per distinct reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.backoff import Backoff
from gateway.clock import Clock, isoformat_utc
from gateway.errors import (
    DownlinkError,
    LinkDownError,
    LinkError,
    PublishRefusedError,
    StorageError,
)
from gateway.sync.config import MqttConfig

__all__ = ["InboundMessage", "LinkStats", "MqttLink", "RefusalHook"]

_LOGGER = logging.getLogger(__name__)

_SESSION_EXPIRY_S = 7 * 24 * 3600  # the broker keeps our session (and QoS 1 downlink) a week
_MISC_INTERVAL_S = 1.0
_DEFAULT_WINDOW = 20


@dataclass(frozen=True, slots=True)
class InboundMessage:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    response_topic: str | None
    correlation_data: bytes | None


MessageHandler = Callable[[InboundMessage], Awaitable[None]]
MessageBatchHandler = Callable[[list[InboundMessage]], Awaitable[None]]
#: Told about every message acknowledged although no handler took it: (the subscription's
#: filter relative to the topic root, the message, why).
RefusalHook = Callable[[str, InboundMessage, str], Awaitable[None]]

_MAX_BATCH = 64  # messages handed to a batch handler at once (by default)
_MAX_BATCH_BYTES = 8 * 1024 * 1024  # payload bytes a batch gathers at most
# A message a storage failure left unacknowledged is handed to its handler again after
# a backoff between these (full jitter); a message taken meanwhile makes it due at once.
_RETRY_INITIAL_S = 1.0
_RETRY_MAX_S = 15.0


@dataclass(frozen=True, slots=True)
class _Route:
    topic_filter: str  # relative to the topic root
    single: MessageHandler | None = None
    batch: MessageBatchHandler | None = None
    max_batch: int = _MAX_BATCH
    linger_s: float = 0.0  # how long a batch waits for more messages once one is there


@dataclass(slots=True)
class LinkStats:
    connected: bool = False
    transport: str = "tls"
    connected_since: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    reconnects: int = 0
    publishes: int = 0
    last_puback_at: datetime | None = None
    receive_maximum: int = _DEFAULT_WINDOW
    subscriptions: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        def stamp(value: datetime | None) -> str | None:
            return None if value is None else isoformat_utc(value)

        return {
            "connected": self.connected,
            "transport": self.transport,
            "connected_since": stamp(self.connected_since),
            "last_error": self.last_error,
            "last_error_at": stamp(self.last_error_at),
            "reconnects": self.reconnects,
            "publishes": self.publishes,
            "last_puback_at": stamp(self.last_puback_at),
            "receive_maximum": self.receive_maximum,
        }


class MqttLink:
    """One MQTT connection to HQ's broker, kept up by :meth:`run`."""

    def __init__(
        self,
        *,
        config: MqttConfig,
        store_id: str,
        boot: int,
        clock: Clock,
        rng: random.Random | None = None,
        announce: bool = True,
        session_expiry_s: int = _SESSION_EXPIRY_S,
    ) -> None:
        self._announce = announce  # birth/will/death on state: stores yes, HQ consumers no
        # 0: a clean session the broker forgets at disconnect (HQ's one-shot tools, which
        # must leave no subscription behind to queue messages for nobody).
        self._session_expiry_s = session_expiry_s
        self._config = config
        self._clock = clock
        self._boot = boot
        self.topic_root = config.topic_root.format(store_id=store_id)
        self.state_topic = self.topic_root + "state"
        self._client_id = config.client_id or f"storegw-{store_id}"
        self._backoff = Backoff(1.0, 60.0, rng=rng)
        self._routes: dict[str, _Route] = {}
        self._subscriptions: list[str] = []
        self._pending: dict[int, tuple[str, asyncio.Future[None]]] = {}
        self._inbox: asyncio.Queue[mqtt.MQTTMessage] = asyncio.Queue()
        self._connected = asyncio.Event()
        self._subscribed = asyncio.Event()  # every SUBSCRIBE of this connection acknowledged
        self._suback_due: set[int] = set()
        self._lost = asyncio.Event()
        self._window = asyncio.Semaphore(_DEFAULT_WINDOW)
        self._client: mqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stats = LinkStats(transport="tls" if config.tls else "PLAINTEXT")
        self.on_refused: RefusalHook | None = None
        self._failing: set[str] = set()  # routes whose handler failed last time (logged once)
        self._refusing: set[str] = set()  # routes that refused a message (without on_refused)
        # Messages not taken for a storage or link failure, in arrival order, tried again
        # while their connection lasts (a new one gets them from the broker again).
        self._untaken: deque[tuple[int, _Route, list[mqtt.MQTTMessage]]] = deque()
        self._connection = 0  # counts successful connects
        self._retry_backoff = Backoff(_RETRY_INITIAL_S, _RETRY_MAX_S, rng=rng)
        self._retry_at = 0.0  # loop time

    # --- public -------------------------------------------------------------------------

    @property
    def connected(self) -> asyncio.Event:
        return self._connected

    @property
    def subscribed(self) -> asyncio.Event:
        """Set once the broker acknowledged (SUBACK) every subscription of this connection:
        the retained messages they bring come right after."""
        return self._subscribed

    def subscribe(
        self, topic_filter: str, handler: MessageHandler, *, share_group: str | None = None
    ) -> None:
        """Deliver messages matching ``topic_filter`` (relative to the topic root) to
        ``handler``; the message is acknowledged to the broker after the handler returns.
        Register before :meth:`run`; subscriptions are renewed on every connect. With
        ``share_group`` it goes through an MQTT 5 shared subscription ``$share/group/…`` so
        several consumers split the load (HQ scale-out)."""
        self._route(topic_filter, _Route(topic_filter, single=handler), share_group)

    def subscribe_batches(
        self,
        topic_filter: str,
        handler: MessageBatchHandler,
        *,
        share_group: str | None = None,
        max_batch: int = _MAX_BATCH,
        linger_s: float = 0.0,
    ) -> None:
        """Like :meth:`subscribe`, but ``handler`` gets every message already waiting for it
        (up to ``max_batch``, and 8 MiB of payload) in one call, and they are acknowledged
        together after it returns — one transaction for many messages when the consumer is
        busy (HQ). ``linger_s``: once a message is there, wait up to this long for more
        (group commit: under a steady flow a batch then carries many messages, at the cost of
        that much latency; the broker's in-flight limit for this client bounds a batch too)."""
        route = _Route(topic_filter, batch=handler, max_batch=max_batch, linger_s=linger_s)
        self._route(topic_filter, route, share_group)

    def _route(self, topic_filter: str, route: _Route, share_group: str | None) -> None:
        full = self.topic_root + topic_filter
        subscription = full if share_group is None else f"$share/{share_group}/{full}"
        self._routes[full] = route
        self._subscriptions.append(subscription)
        self.stats.subscriptions.append(subscription)

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
    ) -> None:
        """Publish and wait for the broker's PUBACK (QoS 1) or the write (QoS 0).

        At most the broker's Receive Maximum publishes are in flight; callers pipeline by
        running several publishes concurrently. ``response_topic`` and ``correlation_data``
        are the MQTT 5 request/response properties."""
        properties = None
        if response_topic is not None or correlation_data is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            if response_topic is not None:
                properties.ResponseTopic = response_topic
            if correlation_data is not None:
                properties.CorrelationData = correlation_data
        async with self._window:
            client = self._client
            if client is None or not self._connected.is_set():
                raise LinkDownError("not connected to the broker")
            info = client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise LinkDownError(f"publish failed: {mqtt.error_string(info.rc)}")
            self.stats.publishes += 1
            if qos == 0:
                return
            assert self._loop is not None
            future: asyncio.Future[None] = self._loop.create_future()
            self._pending[info.mid] = (topic, future)
            await future

    async def rebirth(self) -> None:
        """Publish the retained birth again (HQ's ``rebirth`` command)."""
        birth = json.dumps({"online": True, "boot": self._boot}).encode()
        await self.publish(self.state_topic, birth, retain=True)

    async def run(self) -> None:
        """Connect, stay connected, reconnect with backoff; until cancelled."""
        self._loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mqtt-connect")
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._dispatch_inbound(), name="mqtt.inbound")
                while True:
                    started = self._clock.monotonic()
                    try:
                        await self._connect(executor)
                        await self._serve_connection()
                    except asyncio.CancelledError:
                        self._say_goodbye()  # a clean stop: tell HQ before hanging up
                        raise
                    except Exception as exc:  # noqa: BLE001 - every failure is retried
                        self._record_failure(exc)
                    finally:
                        self._teardown()
                    if self._clock.monotonic() - started > 60:
                        self._backoff.reset()
                    await asyncio.sleep(self._backoff.next_delay())
                    self.stats.reconnects += 1
        finally:
            self._teardown()
            executor.shutdown(wait=True, cancel_futures=True)

    # --- connection ---------------------------------------------------------------------

    def _new_client(self) -> mqtt.Client:
        config = self._config
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self._client_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
            manual_ack=True,
        )
        if config.username is not None:
            password = config.password.get_secret_value() if config.password else None
            client.username_pw_set(config.username, password)
        if config.tls:
            client.tls_set_context(_tls_context(config))
        if self._announce:
            will = json.dumps({"online": False, "boot": self._boot}).encode()
            client.will_set(self.state_topic, will, qos=1, retain=True)
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    async def _connect(self, executor: ThreadPoolExecutor) -> None:
        assert self._loop is not None
        self._lost.clear()
        client = self._new_client()
        self._client = client
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self._session_expiry_s
        config = self._config
        try:
            result = await self._loop.run_in_executor(
                executor,
                lambda: client.connect(
                    config.host,
                    config.port,
                    keepalive=config.keepalive_s,
                    clean_start=self._session_expiry_s == 0,
                    properties=properties,
                ),
            )
        except (OSError, ssl.SSLError) as exc:
            _close_abandoned_sockets(exc)
            raise LinkDownError(f"cannot connect to {config.host}:{config.port}: {exc}") from exc
        if result != mqtt.MQTT_ERR_SUCCESS:
            raise LinkDownError(f"connect failed: {mqtt.error_string(result)}")
        # The socket was opened on the executor thread: register it with the loop here.
        sock = client.socket()
        if sock is not None:
            # paho leaves Nagle on: a small PUBACK or ack written right after another small
            # packet then waits for the peer's delayed ACK (~40 ms), capping the pipeline at
            # ~25 round trips a second.
            if isinstance(sock, socket.socket):  # plain or TLS (SSLSocket is one)
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._watch(sock)
        async with asyncio.timeout(max(10.0, config.keepalive_s)):
            while not self._connected.is_set():
                if self._lost.is_set():
                    raise LinkDownError(self.stats.last_error or "connection refused")
                await asyncio.sleep(0.01)

    async def _serve_connection(self) -> None:
        client = self._client
        assert client is not None
        while not self._lost.is_set():
            if client.loop_misc() != mqtt.MQTT_ERR_SUCCESS:
                raise LinkDownError("keepalive failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_MISC_INTERVAL_S):
                    await self._lost.wait()
        raise LinkDownError(self.stats.last_error or "connection lost")

    def _say_goodbye(self) -> None:
        """On a clean stop, publish the retained death ourselves (the will only fires on an
        unexpected loss), so HQ sees the store offline at once."""
        client = self._client
        if client is None or not self._connected.is_set() or not self._announce:
            return
        death = json.dumps({"online": False, "boot": self._boot}).encode()
        with contextlib.suppress(Exception):
            client.publish(self.state_topic, death, qos=1, retain=True)
            client.loop_write()

    def _teardown(self) -> None:
        client, self._client = self._client, None
        was_connected = self._connected.is_set()
        self._connected.clear()
        self._subscribed.clear()
        self.stats.connected = False
        if client is not None:
            sock = client.socket()
            if sock is not None:
                self._unwatch(sock)
            with contextlib.suppress(Exception):
                client.disconnect() if was_connected else None
            with contextlib.suppress(Exception):
                client.loop_write()
            sock = client.socket()
            if sock is not None:
                self._unwatch(sock)
                with contextlib.suppress(OSError):
                    sock.close()
        self._fail_pending("connection closed")

    def _fail_pending(self, reason: str) -> None:
        pending, self._pending = self._pending, {}
        for topic, future in pending.values():
            if not future.done():
                future.set_exception(LinkDownError(f"{reason} before PUBACK for {topic}"))

    def _record_failure(self, exc: Exception) -> None:
        """A connection attempt or a connection failed: remember why and retry later."""
        if isinstance(exc, OSError | LinkDownError):  # ssl.SSLError is an OSError
            self._record_error(str(exc) or type(exc).__name__)
            return
        # Not a network condition (a bug, or a library failing in a way it does not document):
        # still retried, since only a reconnect can bring HQ back, but shown with its traceback
        # (once per distinct error, like every other link error).
        error = f"{type(exc).__name__}: {exc}"
        if error != self.stats.last_error:
            _LOGGER.error("MQTT link: unexpected %s; reconnecting", error, exc_info=exc)
        self.stats.last_error = error
        self.stats.last_error_at = self._clock.utc_now()

    def _record_error(self, error: str) -> None:
        if error != self.stats.last_error:
            _LOGGER.warning("MQTT link to %s:%d: %s", self._config.host, self._config.port, error)
        self.stats.last_error = error
        self.stats.last_error_at = self._clock.utc_now()

    # --- socket plumbing (paho → asyncio) -----------------------------------------------

    def _watch(self, sock: Any) -> None:
        assert self._loop is not None
        client = self._client
        if client is None:
            return
        self._loop.add_reader(sock, self._read)
        if client.want_write():
            self._loop.add_writer(sock, self._write)

    def _unwatch(self, sock: Any) -> None:
        if self._loop is None:
            return
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)

    def _read(self) -> None:
        if self._client is not None and self._client.loop_read() != mqtt.MQTT_ERR_SUCCESS:
            self._lost.set()

    def _write(self) -> None:
        if self._client is not None and self._client.loop_write() != mqtt.MQTT_ERR_SUCCESS:
            self._lost.set()

    def _on_socket_open(self, _client: mqtt.Client, _userdata: Any, _sock: Any) -> None:
        # Fires on the executor thread during connect(); _connect registers the socket.
        return

    def _on_socket_close(self, _client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        if isinstance(sock, socket.socket):
            self._unwatch(sock)
        self._lost.set()

    def _on_register_write(self, _client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        if self._loop is None or not isinstance(sock, socket.socket):
            return
        if self._loop.is_running() and _in_loop_thread(self._loop):
            self._loop.add_writer(sock, self._write)

    def _on_unregister_write(self, _client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        if self._loop is not None and isinstance(sock, socket.socket):
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_writer(sock)

    # --- protocol callbacks -------------------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self._record_error(f"broker refused connection: {reason_code}")
            self._lost.set()
            return
        # Outbox rows are the only source of truth: forget anything paho kept in memory.
        client.drop_out_messages()
        receive_maximum = getattr(properties, "ReceiveMaximum", None) or _DEFAULT_WINDOW
        self.stats.receive_maximum = min(int(receive_maximum), _DEFAULT_WINDOW)
        self._window = asyncio.Semaphore(self.stats.receive_maximum)
        self._suback_due.clear()
        for topic in self._subscriptions:
            _result, mid = client.subscribe(topic, qos=1)
            if mid is not None:
                self._suback_due.add(mid)
        if not self._suback_due:
            self._subscribed.set()
        if self._announce:
            birth = json.dumps({"online": True, "boot": self._boot}).encode()
            client.publish(self.state_topic, birth, qos=1, retain=True)
        self._connection += 1
        self.stats.connected = True
        self.stats.connected_since = self._clock.utc_now()
        if self.stats.last_error is not None:
            _LOGGER.info("MQTT link to %s:%d restored", self._config.host, self._config.port)
        self.stats.last_error = None
        self._connected.set()

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self._record_error(f"disconnected: {reason_code}")
        self._lost.set()
        self._fail_pending("disconnected")

    def _on_publish(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        entry = self._pending.pop(mid, None)
        if entry is None:
            return  # the birth message, or a publish we stopped waiting for
        topic, future = entry
        self.stats.last_puback_at = self._clock.utc_now()
        if future.done():
            return
        if reason_code.is_failure:
            future.set_exception(PublishRefusedError(topic, reason_code.value, str(reason_code)))
        else:
            future.set_result(None)

    def _on_subscribe(self, _client: mqtt.Client, _userdata: Any, mid: int, *_rest: Any) -> None:
        self._suback_due.discard(mid)
        if not self._suback_due and self._connected.is_set():
            self._subscribed.set()

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._inbox.put_nowait(message)

    async def _dispatch_inbound(self) -> None:
        carried: mqtt.MQTTMessage | None = None
        while True:
            message = carried if carried is not None else await self._next_inbound()
            carried = None
            if message is None:
                await self._retry_untaken()
                continue
            route = self._route_for(message.topic)
            batch = [message]
            if route is not None and route.batch is not None:
                batch, carried = await self._gather(route, message)
            await self._deliver(route, batch)

    async def _gather(
        self, route: _Route, first: mqtt.MQTTMessage
    ) -> tuple[list[mqtt.MQTTMessage], mqtt.MQTTMessage | None]:
        """``first`` and the messages of its route that follow it, waiting for them up to the
        route's linger; and the first message of another route, which ends the batch."""
        batch = [first]
        size = len(first.payload)
        deadline = asyncio.get_running_loop().time() + route.linger_s
        while len(batch) < route.max_batch and size < _MAX_BATCH_BYTES:
            if not self._inbox.empty():
                following = self._inbox.get_nowait()
            elif route.linger_s <= 0:
                break
            else:
                try:
                    async with asyncio.timeout_at(deadline):
                        following = await self._inbox.get()
                except TimeoutError:
                    break
            if self._route_for(following.topic) is not route:
                return batch, following
            batch.append(following)
            size += len(following.payload)
        return batch, None

    async def _next_inbound(self) -> mqtt.MQTTMessage | None:
        """The next message that arrived; None when untaken ones are due to be tried again."""
        if not self._untaken:
            return await self._inbox.get()
        loop = asyncio.get_running_loop()
        if loop.time() < self._retry_at:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(self._retry_at):
                    return await self._inbox.get()
        return None

    async def _retry_untaken(self) -> None:
        """Hand the untaken messages to their handlers again, oldest first, while they are
        taken; the first one still not taken waits for the next round."""
        while self._untaken:
            connection, route, messages = self._untaken[0]
            if connection != self._connection:  # the broker delivers them again itself
                self._untaken.popleft()
                continue
            if not await self._handle(route, messages):
                self._retry_at = (
                    asyncio.get_running_loop().time() + self._retry_backoff.next_delay()
                )
                return
            self._untaken.popleft()
            self._ack(messages)
        self._retry_backoff.reset()

    async def _deliver(self, route: _Route | None, messages: list[mqtt.MQTTMessage]) -> None:
        if route is not None and not await self._handle(route, messages):
            if not self._untaken:
                delay = self._retry_backoff.next_delay()
                self._retry_at = asyncio.get_running_loop().time() + delay
            self._untaken.append((self._connection, route, messages))
            return
        if self._untaken:  # taking works again: the untaken ones need not wait
            self._retry_at = 0.0
        self._ack(messages)

    def _ack(self, messages: list[mqtt.MQTTMessage]) -> None:
        client = self._client
        if client is not None:
            for message in messages:
                if message.qos > 0:
                    client.ack(message.mid, message.qos)

    async def _handle(self, route: _Route, messages: list[mqtt.MQTTMessage]) -> bool:
        """Run the route's handler; False when the messages must stay unacknowledged."""
        inbound = [_inbound(message) for message in messages]
        try:
            if route.batch is not None:
                await route.batch(inbound)
            elif route.single is not None:
                await route.single(inbound[0])
        except (StorageError, LinkError) as exc:
            # Could not be taken now, and would be lost if acknowledged: tried again (see
            # _retry_untaken), and the broker delivers it again in a new session.
            if self._fail_once(route):
                _LOGGER.warning(
                    "%s: not taken, left unacknowledged and tried again: %s",
                    messages[0].topic,
                    exc,
                )
            return False
        except DownlinkError as exc:  # refused by its handler (e.g. unreadable)
            self._failing.discard(route.topic_filter)
            await self._refused(route, inbound, str(exc))
        except Exception as exc:  # a handler's bug must not cut the store off from HQ
            if self._fail_once(route):
                _LOGGER.exception(
                    "handler for %s failed; acknowledged all the same", route.topic_filter
                )
            await self._refused(route, inbound, f"handler failed: {exc!r}")
        else:
            if route.topic_filter in self._failing:
                self._failing.discard(route.topic_filter)
                _LOGGER.info("%s: messages taken again", route.topic_filter)
        return True

    def _fail_once(self, route: _Route) -> bool:
        """Whether this failure of ``route`` is news (so logged): the first since it worked."""
        news = route.topic_filter not in self._failing
        self._failing.add(route.topic_filter)
        return news

    async def _refused(self, route: _Route, inbound: list[InboundMessage], reason: str) -> None:
        if self.on_refused is None:  # nobody counts them: say so once per route
            if route.topic_filter not in self._refusing:
                self._refusing.add(route.topic_filter)
                _LOGGER.warning("%s: message refused: %s", route.topic_filter, reason)
            return
        for message in inbound:
            # Counting it must not keep the message from its ack.
            try:
                await self.on_refused(route.topic_filter, message, reason)
            except StorageError as exc:
                _LOGGER.warning("refusal on %s not recorded: %s", route.topic_filter, exc)
            except Exception:
                _LOGGER.exception("refusal on %s not recorded", route.topic_filter)

    def _route_for(self, topic: str) -> _Route | None:
        for topic_filter, route in self._routes.items():
            if mqtt.topic_matches_sub(topic_filter, topic):
                return route
        return None


def _inbound(message: mqtt.MQTTMessage) -> InboundMessage:
    properties = getattr(message, "properties", None)
    return InboundMessage(
        topic=message.topic,
        payload=bytes(message.payload),
        qos=message.qos,
        retain=bool(message.retain),
        response_topic=getattr(properties, "ResponseTopic", None),
        correlation_data=getattr(properties, "CorrelationData", None),
    )


def _tls_context(config: MqttConfig) -> ssl.SSLContext:
    """The TLS context for ``config``; LinkDownError naming the file that cannot be loaded."""
    try:
        context = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
    except OSError as exc:  # FileNotFoundError, or ssl.SSLError for a file that is no CA
        where = f"CA file {config.ca_file}" if config.ca_file else "the system trust store"
        raise LinkDownError(f"cannot load {where}: {_reason(exc)}") from exc
    if config.client_cert is not None and config.client_key is not None:
        try:
            context.load_cert_chain(str(config.client_cert), str(config.client_key))
        except OSError as exc:
            raise LinkDownError(
                f"cannot load client certificate {config.client_cert} with key "
                f"{config.client_key}: {_reason(exc)}"
            ) from exc
    return context


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _close_abandoned_sockets(exc: BaseException) -> None:
    """paho 2.2 leaves the socket open when the TLS handshake fails inside connect(); close
    the sockets its frames still hold so a flapping link cannot leak file descriptors.

    A socket whose ``socket()`` call itself failed (out of file descriptors) is half built:
    it has no descriptor and ``close()`` on it raises AttributeError. It owns nothing: skip it."""
    traceback = exc.__traceback__
    while traceback is not None:
        for value in list(traceback.tb_frame.f_locals.values()):
            if isinstance(value, socket.socket) and value.fileno() >= 0:
                with contextlib.suppress(OSError):
                    value.close()
        traceback = traceback.tb_next


def _in_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
