"""The fleet bench's phases, shared by bench/fleet.py (figures) and the smoke test (checks).

:class:`FleetBench` owns one run: a private mosquitto on a free port, HQ's signing key and
configuration, the reference consumers, the simulated stores. Each phase returns its figures;
waiting is always for a condition (stores connected, streams flowing, receipts acked) with a
budget, never for a time that is hoped to be enough — except the measuring windows
themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.hq.keys import generate_key
from gateway.hq.push import PricePush, push_to_fleet
from tests.support.broker import Broker
from tests.support.fleet.hq import (
    HqConsumers,
    committed_keys,
    connection_rates,
    exactly_once_problems,
    process_cpu_seconds,
    wait_until,
)
from tests.support.fleet.mix import assign_profiles
from tests.support.fleet.runner import Fleet, FleetTimeoutError

__all__ = ["BROKER_SETTINGS", "FleetBench", "FleetOptions"]

#: What the fleet's broker needs beyond mosquitto's defaults (docs/fleet.md says why).
BROKER_SETTINGS = (
    "set_tcp_nodelay true\n"
    # HQ's consumers' queue: mosquitto's default (1000) drops QoS 1 messages beyond it while
    # a consumer is busy or restarting, which costs the stores an ack timeout each.
    "max_queued_messages 1000000\n"
    "max_inflight_messages 100\n"
)
KID = "fleet-hq"


@dataclass(frozen=True, slots=True)
class FleetOptions:
    stores: int = 1000
    processes: int = 2
    database: str = "sqlite"  # or a postgresql:// URL
    commit_interval_s: float = 1.0
    rate_scale: float = 1.0
    start_spread_s: float = 2.0
    ack_timeout_s: float = 30.0
    price_items: int = 200
    seed: int = 16
    share_group: str | None = None
    produce: bool = True  # False: each store accepts ``first_events`` and then stays quiet
    first_events: int = 0


@dataclass(slots=True)
class Steady:
    seconds: float
    offered_per_s: float
    sustained_per_s: float
    p50_s: float | None
    p99_s: float | None
    consumer_cpu_per_event_s: float
    fleet_cpu_per_event_s: float
    broker_cpu_per_event_s: float
    backlog_growth_per_s: float
    events: int
    envelopes_per_s: float


@dataclass(slots=True)
class CatchUp:
    held: int  # events the stores held when they sent again
    drained: bool  # all acknowledged within the window (else: HQ saturated throughout)
    seconds: float  # until every one of them was acknowledged, or the window
    events_per_s: float  # committed and acknowledged meanwhile (live events included)
    envelopes_per_s: float
    consumer_cpu_per_event_s: float


@dataclass(slots=True)
class Recovery:
    down_s: float
    reconnected_s: float
    flowing_s: float
    flowing_p50_s: float
    peak_connections_per_s: int
    seconds_with_connections: int
    connections: int


@dataclass(slots=True)
class PushFigures:
    stores: int
    tool_s: float  # the push tool: from its first publish until every store settled
    counts: dict[str, int]  # its outcomes
    exit_code: int
    applied_s: float
    receipts_at_hq_s: float
    refused: int


@dataclass(slots=True)
class Check:
    stores: int
    events: int
    problems: list[str] = field(default_factory=list)
    resent_windows: int = 0


class FleetBench:
    def __init__(self, directory: Path, options: FleetOptions) -> None:
        self.directory = directory
        self.options = options
        # Persistence on, saved only when the broker stops: a crash loses what it held since
        # its start, a planned restart keeps sessions, subscriptions and queues.
        persistence = f"persistence true\npersistence_location {directory}/\nautosave_interval 0\n"
        self.broker = Broker(directory, extra=BROKER_SETTINGS + persistence)
        database = options.database
        if database == "sqlite":
            database = str(directory / "hq.db")
        self.consumers = HqConsumers(
            directory,
            host=self.broker.host,
            port=self.broker.port,
            database=database,
            share_group=options.share_group,
        )
        profiles = assign_profiles(options.stores, seed=options.seed)
        self.store_rates = [
            (f"store-{n:05d}", profile.events_per_s * options.rate_scale)
            for n, profile in enumerate(profiles, start=1)
        ]
        self.fleet: Fleet | None = None
        self._push_config = directory / "hq-push.toml"
        self._version = 0

    # --- set-up -------------------------------------------------------------------------

    def __enter__(self) -> Self:
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the broker inherits it
        self.broker.start()
        public_key = generate_key(self.directory / "hq.key", KID)
        self._push_config.write_text(
            f"[mqtt]\nhost = '{self.broker.host}'\nport = {self.broker.port}\ntls = false\n"
            f"allow_plaintext = true\n[hq]\ndatabase = '{self.directory / 'hq-push.db'}'\n"
            f"[signing]\nkey_file = '{self.directory / 'hq.key'}'\nkid = '{KID}'\n",
            encoding="utf-8",
        )
        self.start_consumers(1)
        return self._start_fleet(public_key)

    def _start_fleet(self, public_key: str, **overrides: Any) -> Self:
        options = self.options
        settings: dict[str, Any] = {
            "commit_interval_s": options.commit_interval_s,
            "ack_timeout_s": options.ack_timeout_s,
            "start_spread_s": options.start_spread_s,
            "produce": options.produce,
            "first_events": options.first_events,
            **overrides,
        }
        self.fleet = Fleet(
            host=self.broker.host,
            port=self.broker.port,
            stores=self.store_rates,
            processes=options.processes,
            hq_kid=KID,
            hq_public_key=public_key,
            seed=options.seed,
            **settings,
        )
        self.fleet.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        if self.fleet is not None:
            with contextlib.suppress(Exception):
                self.fleet.stop()
        self.consumers.stop()
        self.broker.stop()

    def start_consumers(self, count: int) -> None:
        client_ids = self.consumers.start(count)
        topic_filter = self.consumers.topic_filter()
        wait_until(
            lambda: (
                self.consumers.check_alive() is None
                and all(self.broker.subscribed(topic_filter, cid) for cid in client_ids)
            ),
            60,
            f"{count} HQ consumer(s) subscribed",
        )

    def wait_connected(self, timeout: float = 120) -> float:
        """Seconds until every store is connected (its birth published)."""
        fleet = self._fleet()
        total = len(self.store_rates)
        return fleet.wait_for(lambda f: f.total("connected") == total, timeout, "stores online")

    def _fleet(self) -> Fleet:
        if self.fleet is None:
            raise RuntimeError("the fleet is not started")
        return self.fleet

    # --- phases -------------------------------------------------------------------------

    def steady(self, seconds: float, *, warmup_s: float = 3.0) -> Steady:
        """Events offered and acknowledged end to end over ``seconds``, after a warm-up."""
        fleet = self._fleet()
        fleet.settle(warmup_s)
        fleet.fresh_reports()
        started, before = time.monotonic(), fleet.total()
        cpu = (self.consumers.cpu_seconds(), fleet.cpu_seconds(), self._broker_cpu())
        fleet.reset_latencies()
        fleet.settle(seconds)
        fleet.fresh_reports()
        self.consumers.check_alive()
        elapsed, after = time.monotonic() - started, fleet.total()
        acked = after["acked"] - before["acked"]
        per_event = max(acked, 1)
        return Steady(
            seconds=elapsed,
            offered_per_s=(after["generated"] - before["generated"]) / elapsed,
            sustained_per_s=acked / elapsed,
            p50_s=fleet.latencies.quantile(0.5),
            p99_s=fleet.latencies.quantile(0.99),
            consumer_cpu_per_event_s=(self.consumers.cpu_seconds() - cpu[0]) / per_event,
            fleet_cpu_per_event_s=(fleet.cpu_seconds() - cpu[1]) / per_event,
            broker_cpu_per_event_s=(self._broker_cpu() - cpu[2]) / per_event,
            backlog_growth_per_s=(after["backlog"] - before["backlog"]) / elapsed,
            events=acked,
            envelopes_per_s=(after["envelopes"] - before["envelopes"]) / elapsed,
        )

    def _broker_cpu(self) -> float:
        process = self.broker.process
        return 0.0 if process is None else process_cpu_seconds(process.pid)

    def catch_up(self, *, hold_s: float, window_s: float = 60.0) -> CatchUp:
        """HQ's capacity: the stores hold their envelopes for ``hold_s`` (HQ unreachable)
        while they go on producing, then send their backlog at once; events committed per
        second until everything held is acknowledged, or over ``window_s`` if HQ cannot
        drain it that fast (saturated). The stores' ack timeout is lifted meanwhile, so the
        figure is the consumers' work, not re-sends'."""
        fleet = self._fleet()
        fleet.send("ack_timeout", 3600)
        fleet.send("hold", True)
        try:
            fleet.settle(hold_s)
            fleet.fresh_reports()
            held, before = fleet.total("backlog"), fleet.total()
            cpu = self.consumers.cpu_seconds()
            started = time.monotonic()
            fleet.send("hold", False)
            target = before["generated"]
            try:
                fleet.wait_for(lambda f: f.total("acked") >= target, window_s, "backlog acked")
                drained = True
            except FleetTimeoutError:
                drained = False
            fleet.fresh_reports()
            elapsed, after = time.monotonic() - started, fleet.total()
        finally:
            fleet.send("hold", False)
            fleet.send("ack_timeout", self.options.ack_timeout_s)
        self.consumers.check_alive()
        acked = after["acked"] - before["acked"]
        return CatchUp(
            held=held,
            drained=drained,
            seconds=elapsed,
            events_per_s=acked / elapsed,
            envelopes_per_s=(after["envelopes"] - before["envelopes"]) / elapsed,
            consumer_cpu_per_event_s=(self.consumers.cpu_seconds() - cpu) / max(acked, 1),
        )

    def scale_out(
        self, counts: tuple[int, ...], hold_s: float, window_s: float = 60.0
    ) -> dict[int, CatchUp]:
        """:meth:`catch_up` with each number of consumers in turn."""
        figures = {}
        for count in counts:
            self.consumers.stop()
            self.start_consumers(count)
            figures[count] = self.catch_up(hold_s=hold_s, window_s=window_s)
        return figures

    def restart_broker(
        self, *, graceful: bool = False, down_s: float = 1.0, timeout: float = 300
    ) -> Recovery:
        """Restart the broker on the same port after ``down_s``: a crash (SIGKILL: what it
        held since its last start is gone — sessions, HQ's subscription, queued messages) or
        a planned restart (SIGTERM: it saves its sessions and queues and loads them again).
        Every store reconnects on its own jittered backoff."""
        fleet = self._fleet()
        producing = len(self.store_rates) if self.options.produce else 0
        fleet.send("mark")
        fleet.fresh_reports()  # every store marked before the broker goes
        if graceful:
            self.broker.stop()
        else:
            self.broker.kill()
        stopped = time.monotonic()
        time.sleep(down_s)
        self.broker.start()
        restarted = time.monotonic()
        stores = len(self.store_rates)
        fleet.wait_for(lambda f: len(f.reconnected()) == stores, timeout, "stores back")
        fleet.wait_for(lambda f: len(f.flowing()) >= producing, timeout, "streams flowing")
        reconnected, flowing = fleet.reconnected(), fleet.flowing()
        self.consumers.check_alive()
        rates = connection_rates(self.broker.log)
        return Recovery(
            down_s=restarted - stopped,
            reconnected_s=reconnected[-1] - restarted,
            flowing_s=flowing[-1] - restarted,
            flowing_p50_s=flowing[len(flowing) // 2] - restarted,
            peak_connections_per_s=max(rates.values(), default=0),
            seconds_with_connections=len(rates),
            connections=sum(rates.values()),
        )

    def retained_births(self, *, timeout: float = 120) -> int:
        """Stores whose retained birth (``state``: online) the broker holds: what HQ (or
        anyone subscribing to ``+/state``) learns of the fleet at once."""
        births: set[str] = set()
        done = threading.Event()
        expected = len(self.store_rates)

        def on_message(_client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
            with contextlib.suppress(ValueError):
                if message.retain and json.loads(message.payload).get("online") is True:
                    births.add(message.topic.split("/")[2])
            if len(births) >= expected:
                done.set()

        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.on_message = on_message
        client.on_connect = lambda c, *_: c.subscribe("retail/v1/+/state", qos=1)
        client.connect(self.broker.host, self.broker.port)
        client.loop_start()
        try:
            done.wait(timeout)
        finally:
            client.disconnect()
            client.loop_stop()
        return len(births)

    def push_prices(self, *, timeout: float = 300) -> PushFigures:
        """One signed price batch per store (its own version, scoped to it) by HQ's own fleet
        push (``storegw hq push-prices``' :func:`push_to_fleet`), which waits for every
        store's receipt; then until HQ's consumers hold every store's price.applied."""
        fleet = self._fleet()
        items = self.options.price_items
        prices = self.directory / "prices.csv"
        prices.write_text(
            "sku,price,currency\n"
            + "".join(f"40063813{n:05d},{1 + n % 50}.{n % 100:02d},EUR\n" for n in range(items)),
            encoding="utf-8",
        )
        stores = [store for store, _rate in self.store_rates]
        push = PricePush.load(self._push_config, prices)
        started = time.monotonic()
        summary = asyncio.run(
            push_to_fleet(push, kind="full", stores=stores, deadline_s=min(timeout, 120.0))
        )
        pushed = summary.versions()
        version = max(pushed.values())
        if min(pushed.values()) != version:
            raise RuntimeError("the stores got different versions: not a fresh HQ push database")
        fleet.wait_for(
            lambda f: f.versions("receipts_known", version)[0] == len(stores), timeout, "receipts"
        )
        fleet.fresh_reports()
        return PushFigures(
            stores=len(stores),
            tool_s=summary.elapsed_s,
            counts=summary.counts,
            exit_code=summary.exit_code,
            applied_s=fleet.versions("applied", version)[1] - started,
            receipts_at_hq_s=fleet.versions("receipts_known", version)[1] - started,
            refused=fleet.total("price_refused"),
        )

    def drain_and_check(self, *, timeout: float = 300) -> Check:
        """Stop producing, wait until HQ acknowledged everything, compare HQ's database with
        what every store accepted."""
        fleet = self._fleet()
        fleet.send("produce", False)
        fleet.fresh_reports()
        fleet.wait_for(lambda f: f.total("backlog") == 0, timeout, "drained")
        summaries = fleet.final()
        self.consumers.stop()  # its last commits are done: read the database alone
        held = committed_keys(self.consumers.database)
        return Check(
            stores=len(summaries),
            events=sum(s["streams"][name]["head"] for s in summaries for name in s["streams"]),
            problems=exactly_once_problems(summaries, held),
            resent_windows=sum(int(s["resent_windows"]) for s in summaries),
        )
