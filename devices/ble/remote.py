"""``ble.remote``: BLE receiver nodes (ESP32 class, one per zone) reporting over MQTT.

One adapter cannot tell shelf zones 3 m apart, so stores put small receiver nodes in each zone.
This driver subscribes to their reports on the store LAN's broker — its own paho connection,
not the gateway's HQ link — in the storegw format and/or ESPresense's
(:mod:`devices.ble.remote_protocol`). Each node is a receiver: its adverts are
:class:`Advertisement` s with ``receiver`` = the node's name; a node that falls silent for
``node_silence_s`` or sends its last will is reported as :class:`ReceiverStatus` (quiet /
offline) while the driver itself stays up, and as online again when it is heard.

paho's network thread only parses and hands messages over (``call_soon_threadsafe``) into a
bounded queue; when it is full the message is dropped and counted. Garbage is counted per
kind and logged once. The broker unreachable at start or lost later is
:class:`DriverUnavailableError` (the supervisor retries with backoff).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import BaseModel, ConfigDict, Field

from devices.ble.address_resolution import IdentityResolver
from devices.ble.advertising import parse_advertising_data
from devices.ble.beacon_fields import beacon_fields
from devices.ble.remote_protocol import (
    NodeReport,
    NodeStatus,
    parse_espresense,
    parse_storegw,
)
from devices.kit.plugin import driver_plugin
from gateway.drivers.contracts import (
    Advertisement,
    DeviceFamily,
    DriverContext,
    Heartbeat,
    Reading,
    ReceiverState,
    ReceiverStatus,
)
from gateway.errors import DriverUnavailableError

__all__ = ["PLUGIN", "RemoteReceivers", "RemoteReceiversOptions"]

_LOGGER = logging.getLogger(__name__)
_HEARTBEAT_S = 5.0


class RemoteReceiversOptions(BaseModel):
    """Options of ``ble.remote``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(min_length=1, max_length=255, description="The store LAN's broker.")
    port: int = Field(1883, ge=1, le=65535, description="Its port.")
    username: str | None = Field(None, max_length=255, description="MQTT user, if any.")
    password: str | None = Field(None, max_length=1024, description="Its password.")
    tls: bool = Field(False, description="TLS to the broker.")
    ca_file: str | None = Field(None, description="CA bundle for TLS (default: the system's).")
    client_id: str | None = Field(None, max_length=64, description="Default: storegw-<name>.")
    storegw_prefix: str | None = Field(
        "storegw/receivers", max_length=128, description="storegw-format topics; null: off."
    )
    espresense_prefix: str | None = Field(
        None, max_length=128, description="ESPresense topics (e.g. espresense); null: off."
    )
    nodes: dict[str, str] = Field(
        default_factory=dict,
        description="Node id -> receiver name; empty: every node, by its own id. With nodes "
        "listed, others are ignored (counted).",
    )
    node_silence_s: float = Field(
        30.0, ge=1, le=3600, description="A node unheard this long is reported quiet."
    )
    queue_size: int = Field(10_000, ge=10, le=1_000_000, description="Messages waiting at most.")
    connect_timeout_s: float = Field(10.0, gt=0, le=120, description="To reach the broker.")


class RemoteReceivers:
    """A :class:`~gateway.drivers.contracts.BeaconReceiver` over MQTT receiver nodes."""

    def __init__(self, context: DriverContext, options: RemoteReceiversOptions) -> None:
        self._context, self._options = context, options
        self._resolver = IdentityResolver()
        self._queue: asyncio.Queue[tuple[str, bytes]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt.Client | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._lost = threading.Event()
        self._lost_reason = ""
        self.dropped = 0
        self.garbage: Counter[str] = Counter()
        self._warned: set[str] = set()
        self._last_seen: dict[str, float] = {}
        self._state: dict[str, ReceiverState] = {}
        self._seq: dict[str, int] = {}
        self.lost_messages = 0

    # --- the contract ------------------------------------------------------------------------

    def set_identity_keys(self, keys: Mapping[str, bytes]) -> None:
        self._resolver.replace(keys)

    @property
    def status_detail(self) -> str:
        quiet = sorted(n for n, s in self._state.items() if s is not ReceiverState.ONLINE)
        parts = [f"{len(self._state)} node(s)"]
        if quiet:
            parts.append("not reporting: " + ", ".join(quiet))
        if self.garbage:
            parts.append(f"{sum(self.garbage.values())} bad message(s)")
        if self.dropped:
            parts.append(f"{self.dropped} dropped (queue full)")
        return "; ".join(parts)

    async def open(self) -> None:
        options = self._options
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(options.queue_size)
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=options.client_id or f"storegw-{self._context.name}",
            protocol=mqtt.MQTTv311,
        )
        if options.username is not None:
            client.username_pw_set(options.username, options.password)
        if options.tls:
            context = ssl.create_default_context(cafile=options.ca_file)
            client.tls_set_context(context)
        connected = threading.Event()
        failure: list[str] = []

        def on_connect(c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if reason.is_failure:
                failure.append(str(reason))
            else:
                for prefix in (options.storegw_prefix, options.espresense_prefix):
                    if prefix:
                        c.subscribe(prefix.rstrip("/") + "/#", qos=0)
            connected.set()

        def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            self._lost_reason = f"broker connection lost ({reason})"
            self._lost.set()
            if self._loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop closed first
                    self._loop.call_soon_threadsafe(self._wake)

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_message = self._on_message
        self._client = client
        where = f"{options.host}:{options.port}"
        executor = self._executor = ThreadPoolExecutor(1, thread_name_prefix="ble-remote-connect")
        try:
            await self._loop.run_in_executor(
                executor, client.connect, options.host, options.port, 30
            )
        except (OSError, ValueError) as exc:
            raise DriverUnavailableError(f"receiver broker {where} unreachable: {exc}") from exc
        client.loop_start()
        deadline = self._loop.time() + options.connect_timeout_s
        while not connected.is_set():  # CONNACK comes on paho's thread
            if self._loop.time() > deadline:
                raise DriverUnavailableError(f"receiver broker {where}: no CONNACK")
            await asyncio.sleep(0.01)
        if failure:
            raise DriverUnavailableError(f"receiver broker {where} refused: {failure[0]}")

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.on_disconnect = None
                client.disconnect()
            with contextlib.suppress(Exception):
                client.loop_stop()  # joins paho's thread: quick once disconnected
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    async def readings(self) -> AsyncIterator[Reading]:
        assert self._queue is not None, "open() first"
        queue = self._queue
        clock = self._context.clock
        while True:
            if self._lost.is_set():
                raise DriverUnavailableError(self._lost_reason or "broker connection lost")
            try:
                async with asyncio.timeout(_HEARTBEAT_S):
                    topic, payload = await queue.get()
            except TimeoutError:
                for status in self._silence():
                    yield status
                yield Heartbeat(clock.monotonic(), "no report from any node")
                continue
            if not topic:  # a wake-up: the connection was lost
                continue
            for reading in self._decode(topic, payload):
                yield reading
            for status in self._silence():
                yield status

    # --- paho's thread: hand over only ---------------------------------------------------

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._enqueue, message.topic, bytes(message.payload))

    def _enqueue(self, topic: str, payload: bytes) -> None:
        assert self._queue is not None
        try:
            self._queue.put_nowait((topic, payload))
        except asyncio.QueueFull:
            self.dropped += 1

    def _wake(self) -> None:
        if self._queue is not None:
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(("", b""))

    # --- decoding (the event loop) -------------------------------------------------------

    def _decode(self, topic: str, payload: bytes) -> list[Reading]:
        options = self._options
        parsed: NodeReport | NodeStatus | None = None
        kind = "unknown topic"
        if options.storegw_prefix and topic.startswith(options.storegw_prefix.rstrip("/") + "/"):
            parsed, kind = parse_storegw(topic, payload, options.storegw_prefix), "storegw"
        elif options.espresense_prefix and topic.startswith(
            options.espresense_prefix.rstrip("/") + "/"
        ):
            if "/telemetry" in topic or topic.endswith("/max_distance"):
                return []  # ESPresense's own housekeeping: not adverts
            parsed, kind = parse_espresense(topic, payload, options.espresense_prefix), "espresense"
        if parsed is None:
            self._bad(f"malformed {kind} message", topic)
            return []
        receiver = self._receiver(parsed.node)
        if receiver is None:
            self._bad("message from a node not in `nodes`", topic)
            return []
        clock = self._context.clock
        now, at = clock.monotonic(), clock.utc_now()
        readings: list[Reading] = []
        if isinstance(parsed, NodeStatus):
            state = ReceiverState.ONLINE if parsed.state == "online" else ReceiverState.OFFLINE
            if state is ReceiverState.ONLINE:
                self._last_seen[receiver] = self._elapsed()
            readings += self._set_state(receiver, state, now, at, "status: " + parsed.state)
            return readings
        self._last_seen[receiver] = self._elapsed()
        self._count_seq(receiver, parsed.seq)
        readings += self._set_state(receiver, ReceiverState.ONLINE, now, at, "reporting")
        for advert in parsed.adverts:
            fields = None
            manufacturer: Mapping[int, bytes] = {}
            service: Mapping[str, bytes] = {}
            uuids: tuple[str, ...] = ()
            name: str | None = None
            tx_power: int | None = None
            if advert.advertising_data is not None:
                data = parse_advertising_data(advert.advertising_data)
                if data is None:
                    self._bad("advertising data whose lengths do not add up", topic)
                    continue
                manufacturer, service, uuids = (
                    data.manufacturer_data,
                    data.service_data,
                    data.service_uuids,
                )
                name, tx_power = data.local_name, data.tx_power
                fields = beacon_fields(manufacturer, service)
            readings.append(
                Advertisement(
                    receiver=receiver,
                    address=advert.address,
                    rssi=advert.rssi,
                    monotonic=now,
                    observed_at=at,
                    manufacturer_data=manufacturer,
                    service_data=service,
                    service_uuids=uuids,
                    tx_power=tx_power,
                    local_name=name,
                    beacon=fields.beacon if fields is not None else advert.beacon,
                    measured_power=fields.measured_power
                    if fields is not None
                    else advert.measured_power,
                    telemetry=fields.telemetry if fields is not None else None,
                    enrolled_key=self._resolver.resolve(advert.address),
                )
            )
        return readings

    def _receiver(self, node: str) -> str | None:
        nodes = self._options.nodes
        return nodes.get(node) if nodes else node

    def _count_seq(self, receiver: str, seq: int | None) -> None:
        if seq is None:
            return
        last = self._seq.get(receiver)
        if last is not None and seq > last + 1:
            self.lost_messages += seq - last - 1
        self._seq[receiver] = seq

    def _set_state(
        self, receiver: str, state: ReceiverState, now: float, at: Any, detail: str
    ) -> list[Reading]:
        if self._state.get(receiver) is state:
            return []
        self._state[receiver] = state
        if state is not ReceiverState.ONLINE:
            _LOGGER.warning("receiver node %s: %s (%s)", receiver, state.value, detail)
        return [ReceiverStatus(receiver, state, now, at, detail)]

    def _elapsed(self) -> float:
        """Real time for the nodes' silence (the event loop's clock: I/O takes real time);
        readings are stamped with the injected clock."""
        assert self._loop is not None
        return self._loop.time()

    def _silence(self) -> list[Reading]:
        limit, elapsed = self._options.node_silence_s, self._elapsed()
        clock = self._context.clock
        readings: list[Reading] = []
        for receiver, seen in self._last_seen.items():
            if elapsed - seen > limit and self._state.get(receiver) is ReceiverState.ONLINE:
                readings += self._set_state(
                    receiver,
                    ReceiverState.QUIET,
                    clock.monotonic(),
                    clock.utc_now(),
                    f"silent for {elapsed - seen:.0f} s",
                )
        return readings

    def _bad(self, what: str, topic: str) -> None:
        self.garbage[what] += 1
        if what not in self._warned:
            self._warned.add(what)
            _LOGGER.warning(
                "ble.remote %s: %s on %r (counted, logged once)",
                self._context.name,
                what,
                topic[:120],
            )


PLUGIN = driver_plugin(
    RemoteReceivers,
    family=DeviceFamily.BEACON,
    options=RemoteReceiversOptions,
    description="BLE receiver nodes (storegw format, ESPresense) over the store LAN's MQTT",
)
