"""End-to-end uplink throughput against a local mosquitto, with a same-run bare-paho ceiling.

Gateway path: events appended (group commit) → envelopes → PUBACK → HQ stores and acks the
watermark → rows deleted. Ceiling: a bare paho client publishing the same envelopes (same size,
same events per message) at QoS 1 as fast as it can to the same broker, done at its last
PUBACK — encoding each envelope as it goes (as any producer of distinct envelopes must) with
orjson, the encoder storegw uses; for reference also with the standard library's json, and
with every envelope encoded before the clock starts (the socket and broker alone). HQ is the
reference consumer (`storegw hq tail --quiet`: stores and acks, prints nothing) in its own
process.
Goal (issue 3): >= 50 000 events/s and >= 50 % of the ceiling (judged against the orjson one:
a ceiling with a slower encoder than storegw's own would flatter the ratio).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _daemon
from gateway.clock import SystemClock
from gateway.store import Database
from gateway.store.outbox import Outbox
from gateway.sync.config import MqttConfig
from gateway.sync.link import MqttLink
from gateway.sync.uplink import Uplink, UplinkSettings, connect_outbox
from gateway.wire import StockChanged
from gateway.wire.envelope import TrustedEvents

EVENTS = int(os.environ.get("BENCH_EVENTS", "200000"))
CEILING = "encoding each envelope with orjson"  # the one the goal is judged against
CHUNK = 2_000
OUTSTANDING = 4  # chunks waiting for their commit at once
# A stock.changed event as the shelves service makes it (its fields in the model's order);
# ``before`` numbers them (each differs).
EVENT = {
    "slot": "slot-12",
    "sku": "4006381333931",
    "kind": "pick",
    "before": 0,
    "after": 6,
    "delta": -1,
    "confidence": 0.98,
    "grams": -251.3,
}


def stock_changed(n: int) -> StockChanged:
    """Event ``n`` as the shelves service builds it: the wire model, trusted (its values
    come typed from the slot counter; gateway/shelves/service.py)."""
    return StockChanged.trusted({**EVENT, "before": n})


def stock_changes(first: int, count: int) -> TrustedEvents[StockChanged]:
    """Events ``first``… as a producer handing over a batch builds them (trusted)."""
    return StockChanged.trusted_many([{**EVENT, "before": n} for n in range(first, first + count)])


def producers_cpu_per_event(count: int = 20_000) -> dict[str, float]:
    """CPU seconds a producer spends building one event (the producers' share of the
    gateway's CPU above: the typed contract's cost, paid where the event is made): trusted
    one by one, trusted in a batch, and validated (what an event from outside costs)."""
    costs = {}
    for label, build in (
        ("trusted", lambda: [stock_changed(n) for n in range(count)]),
        ("trusted batch", lambda: stock_changes(0, count)),
        (
            "validated",
            lambda: [StockChanged.validated({**EVENT, "before": n}) for n in range(count)],
        ),
    ):
        started = time.process_time()
        build()
        costs[label] = (time.process_time() - started) / count
    return costs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Hq:
    """Counts distinct events per stream and acks the watermark (like tests/sync/fake_hq)."""

    def __init__(self, port: int, ack: bool) -> None:
        self.count = 0
        self.done = threading.Event()
        self.ack = ack
        self.seen: set[int] = set()
        self.watermark = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        ready = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe("bench/+/up/#", qos=1)
        self.client.on_subscribe = lambda *_: ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        ready.wait(10)

    def _on_message(self, client: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        if message.topic.endswith("/health") or message.topic.endswith("/state"):
            return
        envelope = json.loads(message.payload)
        for event in envelope["events"]:
            self.seen.add(event["seq"])
        while self.watermark + 1 in self.seen:
            self.watermark += 1
        if self.ack:
            ack = {"stream": envelope["stream"], "epoch": envelope["epoch"], "seq": self.watermark}
            client.publish(f"bench/{envelope['store']}/down/ack", json.dumps(ack), qos=1)
        if len(self.seen) >= EVENTS:
            self.done.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def start_hq(port: int, directory: Path) -> subprocess.Popen[bytes]:
    """The reference HQ consumer in its own process, connected and subscribed."""
    return _daemon.start_hq(port, directory, topic_root="bench/{store_id}/", settle_s=1.5)


def bench_uplink(
    outbox: Outbox, db: Database, clock: SystemClock, port: int
) -> tuple[MqttLink, Uplink]:
    """The store's link and uplink against the local broker, catch-up rate limit lifted."""
    config = MqttConfig(
        host="127.0.0.1",
        port=port,
        tls=False,
        allow_plaintext=True,
        topic_root="bench/{store_id}/",
    )
    return connect_outbox(
        outbox,
        config=config,
        store_id="s1",
        boot=db.boot,
        clock=clock,
        settings=UplinkSettings(messages_per_second=None),
    )


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time of a process (default: this one, all threads)."""
    if pid is None:
        return time.process_time()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def gateway_run(
    port: int, directory: Path, *, batched: bool, hq_pid: int
) -> tuple[float, int]:
    clock = SystemClock()
    cpu_before = cpu_seconds(), cpu_seconds(hq_pid)
    name = "batched.db" if batched else "single.db"
    async with Database.running(directory / name, clock=clock, commit_max_rows=5000) as db:
        outbox = Outbox(db, clock)
        await outbox.open(("stock",))
        link, uplink = bench_uplink(outbox, db, clock, port)
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(link.run()), group.create_task(uplink.run())]
            await link.connected.wait()
            started = time.perf_counter()
            # Producers keep producing while earlier events commit: up to OUTSTANDING chunks
            # wait for their commit at any time (a driver does not stall on the last write).
            outstanding: deque[asyncio.Future[Any]] = deque()
            for first in range(0, EVENTS, CHUNK):
                if batched:  # a producer handing over a batch: one future per batch
                    outstanding.append(outbox.append_many("stock", stock_changes(first, CHUNK)))
                else:  # many single-event producers: one future per event
                    outstanding.append(
                        asyncio.gather(
                            *(
                                outbox.append("stock", stock_changed(first + n))
                                for n in range(CHUNK)
                            )
                        )
                    )
                if len(outstanding) >= OUTSTANDING:
                    await outstanding.popleft()
                else:
                    await asyncio.sleep(0)  # let the writer and the uplink run
            await asyncio.gather(*outstanding)
            accepted = time.perf_counter() - started
            # Done when HQ (another process) has acknowledged custody of every event.
            while sum(s.depth for s in await outbox.states()):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            elapsed = time.perf_counter() - started
            for task in tasks:
                task.cancel()
    gateway_cpu = cpu_seconds() - cpu_before[0]
    hq_cpu = cpu_seconds(hq_pid) - cpu_before[1]
    producers = ", ".join(
        f"{label} {cost * 1e6:.2f} µs" for label, cost in producers_cpu_per_event().items()
    )
    print(
        f"  (accepted = committed in {accepted:.2f} s: {EVENTS / accepted:,.0f} events/s; CPU "
        f"per event: gateway {gateway_cpu / EVENTS * 1e6:.1f} µs, HQ "
        f"{hq_cpu / EVENTS * 1e6:.1f} µs; a producer building one: {producers})"
    )
    return elapsed, EVENTS


def start_broker(directory: Path, port: int) -> subprocess.Popen[bytes]:
    """A private mosquitto (defaults: no persistence) on ``port``."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    conf = directory / "m.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n")
    broker = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return broker


def _stdlib_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


ENCODERS = {"orjson": orjson.dumps, "stdlib json": _stdlib_json}


def ceiling_run(
    port: int,
    envelope_bytes: bytes,
    events_per_message: int,
    events: int = EVENTS,
    *,
    encoder: str | None = "orjson",
) -> float:
    """Bare paho: the same envelopes (size, events per message), QoS 1, window 20, TCP_NODELAY
    as storegw sets it, done at the last PUBACK. Each envelope gets its own seqs and is encoded
    by ``encoder`` as it is sent (as any producer of distinct envelopes must); with None they
    are all encoded before the clock starts (the socket and broker alone)."""
    messages = events // events_per_message
    template = json.loads(envelope_bytes)
    encode = ENCODERS[encoder or "orjson"]
    prebuilt = encoder is None

    def envelope(index: int) -> bytes:
        base = index * events_per_message
        for offset, event in enumerate(template["events"]):
            event["seq"] = base + offset + 1
        return encode(template)

    payloads = [envelope(index) for index in range(messages)] if prebuilt else []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(20)
    client.connect("127.0.0.1", port)
    client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.loop_start()
    started = time.perf_counter()
    infos = [
        client.publish("bench/s1/up/stock", payloads[index] if prebuilt else envelope(index), qos=1)
        for index in range(messages)
    ]
    for info in infos:
        info.wait_for_publish(60)
    elapsed = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    return elapsed


def measure_ceilings(port: int, events: int = EVENTS) -> dict[str, float]:
    """Both bare-paho ceilings, in events/s, printed."""
    per_message = UplinkSettings().max_events_per_message
    sample = sample_envelope(per_message)
    ceilings = {}
    for label, encoder in (
        (CEILING, "orjson"),
        ("encoding each with the standard json", "stdlib json"),
        ("pre-encoded", None),
    ):
        seconds = ceiling_run(port, sample, per_message, events, encoder=encoder)
        ceilings[label] = events / seconds
        print(
            f"bare paho ceiling ({label}): {events:,} events in {seconds:.2f} s = "
            f"{events / seconds:,.0f} events/s ({per_message} events/message, "
            f"{len(sample):,} bytes)"
        )
    return ceilings


def ratios(rate: float, ceilings: dict[str, float]) -> str:
    return ", ".join(
        f"{rate / ceiling:.0%} of the {label} ceiling" for label, ceiling in ceilings.items()
    )


def verdict(rate: float, ceilings: dict[str, float]) -> str:
    ratio = rate / ceilings[CEILING]
    return (
        f"goal >= 50,000 events/s: {'met' if rate >= 50_000 else 'NOT met'}; goal >= 50 % of "
        f"the {CEILING} ceiling: {ratio:.0%}, {'met' if ratio >= 0.5 else 'NOT met'}"
    )


def sample_envelope(events_per_message: int) -> bytes:
    events = [
        {
            "seq": n + 1,
            "id": "0123456789abcdef",
            "ts": "2026-11-23T09:00:00.000+00:00",
            "type": "stock.changed",
            **stock_changed(n).model_dump(),
        }
        for n in range(events_per_message)
    ]
    return json.dumps(
        {
            "v": 1,
            "type": "events",
            "store": "s1",
            "stream": "stock",
            "epoch": "0123456789abcdef",
            "boot": 1,
            "seq_from": 1,
            "seq_to": events_per_message,
            "sent_at": "2026-11-23T09:00:00.000+00:00",
            "events": events,
        },
        separators=(",", ":"),  # compact, as storegw sends it
    ).encode()


def main() -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        broker = start_broker(Path(tmp), port)
        try:
            ceilings = measure_ceilings(port)
            hq = start_hq(port, Path(tmp))
            try:
                runs = [
                    (
                        batched,
                        asyncio.run(gateway_run(port, Path(tmp), batched=batched, hq_pid=hq.pid)),
                    )
                    for batched in (False, True)
                ]
            finally:
                hq.terminate()
                hq.wait()
            for batched, (elapsed, count) in runs:
                label = "append_many (batches)" if batched else "append (one per event)"
                print(
                    f"storegw end to end, {label}, accepted → HQ-acked → deleted: "
                    f"{count:,} events in {elapsed:.2f} s = {count / elapsed:,.0f} events/s; "
                    f"{ratios(count / elapsed, ceilings)}"
                )
            best = max(count / elapsed for _, (elapsed, count) in runs)
            print(f"best storegw run: {verdict(best, ceilings)}")
        finally:
            broker.terminate()
            broker.wait()


if __name__ == "__main__":
    main()
