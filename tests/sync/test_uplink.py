"""Uplink end to end against a real mosquitto and a fake HQ: nothing lost, custody honoured."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import random
import time
from pathlib import Path

import pytest

from gateway.alerts import Alerts
from gateway.backoff import Backoff
from gateway.clock import FakeClock, SystemClock
from gateway.store import Database
from gateway.store.budget import BufferBudget, Shed
from gateway.store.outbox import Outbox, StreamState
from gateway.sync.config import MqttConfig
from gateway.sync.keeper import PRESSURE_ALERT
from gateway.sync.uplink import Custody, RateLimiter, UplinkSettings, connect_outbox
from gateway.wire import validate_event
from tests.store.probes import PROBES, probe, probes
from tests.support.broker import Broker
from tests.support.filesystems import tmpfs
from tests.sync.fake_hq import FakeHq
from tests.sync.proxy import Proxy
from tests.sync.support import STREAMS, depth, drained, gateway, until, within
from tests.waiting import patience
from tests.waiting import until as until_async

FAST_RESEND = UplinkSettings(messages_per_second=None, ack_timeout_s=2.0)


async def test_events_reach_hq_in_order_and_leave_the_outbox(
    tmp_path: Path, mosquitto: Broker
) -> None:
    hq = FakeHq(mosquitto)
    try:
        async with gateway(tmp_path / "g.db", mosquitto) as gw:
            await asyncio.gather(
                *(gw.outbox.append("stock", probe("stock.changed", {"n": n})) for n in range(3000)),
                *(gw.outbox.append("alerts", probe("alert.raised", {"n": n})) for n in range(20)),
            )
            epoch = gw.outbox.epoch
            await until(lambda: len(hq.seqs("stock", epoch)) == 3000)
            await until(lambda: len(hq.seqs("alerts", epoch)) == 20)
            assert await drained(gw.outbox, 20) == 0
            assert gw.uplink.last_ack is not None
    finally:
        hq.close()
    assert hq.seqs("stock", epoch) == list(range(1, 3001))
    stored = hq.events[("stock", epoch)]
    assert [stored[seq]["n"] for seq in range(1, 3001)] == list(range(3000))
    assert hq.envelopes < 100  # many events per message


class LowJitter(random.Random):
    """Full jitter that always picks the low end of its range."""

    def uniform(self, a: float, b: float) -> float:
        return a


@pytest.mark.slow
async def test_broker_crashes_lose_nothing(tmp_path: Path, mosquitto: Broker) -> None:
    hq = FakeHq(mosquitto)
    try:
        # Envelopes the broker accepted while HQ was not yet re-subscribed are recovered by the
        # ack timeout (kept short here so the test stays fast).
        settings = UplinkSettings(ack_timeout_s=2.0, messages_per_second=None)
        async with gateway(tmp_path / "g.db", mosquitto, settings) as gw:
            # Reconnects at the backoff's floor: five crashes without a minute of jitter.
            gw.link._backoff = Backoff(1.0, 60.0, rng=LowJitter())
            epoch = gw.outbox.epoch
            total = 0
            for _round in range(5):  # 20 000 events, the broker SIGKILLed 5 times mid-flow
                published = gw.link.stats.publishes
                await gw.outbox.append_many(
                    "stock", probes("s", ({"n": total + n} for n in range(4000)))
                )
                total += 4000
                await until(lambda p=published: gw.link.stats.publishes > p)  # flowing
                mosquitto.kill()  # persistence off: it forgets every queued message
                await asyncio.sleep(0.3)  # the outage (its length changes nothing)
                mosquitto.start()
            await until(lambda: hq.seqs("stock", epoch) == list(range(1, total + 1)), 90)
            assert await drained(gw.outbox, 30) == 0
            stored = hq.events[("stock", epoch)]
            assert [stored[seq]["n"] for seq in range(1, total + 1)] == list(range(total))
    finally:
        hq.close()


async def test_without_hq_acks_rows_stay_and_are_resent(tmp_path: Path, mosquitto: Broker) -> None:
    hq = FakeHq(mosquitto, ack=False)
    try:
        settings = UplinkSettings(ack_timeout_s=0.5, messages_per_second=None)
        async with gateway(tmp_path / "g.db", mosquitto, settings) as gw:
            await asyncio.gather(
                *(gw.outbox.append("receipts", probe("r", {"n": n})) for n in range(10))
            )
            await until(lambda: hq.duplicates >= 10)  # re-sent after the ack timeout
            assert await depth(gw.outbox) == 10  # nothing released without HQ's word

            async def all_sent() -> StreamState | None:  # PUBACKed, recorded a moment later
                state = await stream_state(gw.outbox, "receipts")
                return state if state.sent_seq == 10 else None

            state = await until_async(all_sent, what="the PUBACKs of 1..10 recorded")
            assert state.acked_seq == 0
            # Garbage and foreign acks change nothing: HQ's acks are handled in order, so once
            # a real ack of 1..5 took effect, those before it were handled — and released none.
            for payload in (
                b"garbage",
                b'{"stream":"receipts"}',
                b'{"stream":"receipts","epoch":"0000000000000000","seq":10}',
                f'{{"stream":"receipts","epoch":"{gw.outbox.epoch}","seq":5}}'.encode(),
            ):
                hq.publish_raw("retail/v1/s1/down/ack", payload)

            async def released() -> tuple[int] | None:
                left = await depth(gw.outbox)
                return (left,) if left < 10 else None

            assert await until_async(released, what="the ack of 1..5 taken") == (5,)
            hq.publish_raw(
                "retail/v1/s1/down/ack",
                f'{{"stream":"receipts","epoch":"{gw.outbox.epoch}","seq":10}}'.encode(),
            )
            assert await drained(gw.outbox, 10) == 0
    finally:
        hq.close()


async def test_broker_custody_releases_on_puback(tmp_path: Path, mosquitto: Broker) -> None:
    hq = FakeHq(mosquitto, ack=False)
    try:
        settings = UplinkSettings(custody=Custody.BROKER, messages_per_second=None)
        async with gateway(tmp_path / "g.db", mosquitto, settings) as gw:
            await asyncio.gather(
                *(gw.outbox.append("dwell", probe("d", {"n": n})) for n in range(100))
            )
            await until(lambda: len(hq.seqs("dwell", gw.outbox.epoch)) == 100)
            assert await drained(gw.outbox, 10) == 0
    finally:
        hq.close()


async def stream_state(outbox: Outbox, stream: str) -> StreamState:
    return {state.stream: state for state in await outbox.states()}[stream]


def test_rate_limiter_spaces_messages() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10.0, clock, burst=2)
    assert limiter.delay() == 0
    assert limiter.delay() == 0
    assert limiter.delay() > 0  # burst spent
    clock.advance(0.1)
    assert limiter.delay() == 0
    assert RateLimiter(None, clock).delay() == 0


REFUSING_ACL = (
    # Everyone (all anonymous here) may use these; nobody may write up/receipts.
    "pattern readwrite retail/v1/s1/state\npattern readwrite retail/v1/s1/up/stock\n"
    "pattern readwrite retail/v1/s1/up/alerts\npattern read retail/v1/s1/up/receipts\n"
    "pattern readwrite retail/v1/s1/down/#\n"
)
ALLOWING_ACL = REFUSING_ACL.replace(
    "pattern read retail/v1/s1/up/receipts", "pattern readwrite retail/v1/s1/up/receipts"
)


def denied_publishes(broker: Broker, topic: str) -> int:
    """Publishes the broker refused on ``topic``, as its log tells (``log_type all``; read as
    it comes, where a log file would hold back what it has not flushed yet)."""
    return sum("Denied PUBLISH" in line and f"'{topic}'" in line for line in list(broker.log))


@pytest.mark.slow
async def test_refused_stream_is_parked_alerted_and_kept(tmp_path: Path) -> None:
    """A stream the broker's ACL refuses is parked with backoff (a bounded number of attempts,
    counted by the broker), alerted, kept whole; once the ACL allows it, it flows and the
    alert clears."""
    acl = tmp_path / "acl"
    acl.write_text(REFUSING_ACL, encoding="utf-8")
    broker = Broker(tmp_path, extra=f"acl_file {acl}\nlog_type all")
    broker.start()
    hq = FakeHq(broker)
    topic = "retail/v1/s1/up/receipts"
    try:
        started = time.monotonic()  # before the gateway's first attempt
        async with gateway(tmp_path / "g.db", broker) as gw:
            epoch = gw.outbox.epoch
            await asyncio.gather(
                *(gw.outbox.append("receipts", probe("r", {"n": n})) for n in range(5)),
                *(gw.outbox.append("stock", probe("s", {"n": n})) for n in range(5)),
            )
            await until(lambda: "receipts" in gw.uplink.parked)
            await until(lambda: len(hq.seqs("stock", epoch)) == 5)  # others keep flowing
            await until(lambda: len(hq.seqs("alerts", epoch)) >= 1)
            alert = hq.events[("alerts", epoch)][1]
            assert alert["key"] == "uplink.refused:receipts"
            assert "0x87" in alert["message"]
            validate_event(alert)

            # Keep refusing for a while, then count the attempts where they land: the broker.
            await asyncio.sleep(3.0)
            attempts = denied_publishes(broker, topic)
            span = time.monotonic() - started
            # Every attempt re-sends the 5 events from the watermark: one envelope. Then the
            # stream is parked for at least the backoff's floor (full jitter may pick anything
            # from there up to 5 s, 10 s, 20 s…), so within the span there can be at most one
            # attempt per floor after the first; a stream that was not parked would be
            # refused hundreds of times.
            floor = Backoff(5.0, 300.0).floor  # the Uplink's parking policy (StreamCursor)
            assert attempts >= 1
            assert attempts <= 1 + span / floor, (attempts, span)
            state = {s.stream: s for s in await gw.outbox.states()}["receipts"]
            assert state.depth == 5  # nothing lost, nothing deleted
            assert state.sent_seq == 0
            assert state.acked_seq == 0
            assert hq.seqs("receipts", epoch) == []

            # The ACL is fixed and reloaded: at its next attempt the stream flows again.
            acl.write_text(ALLOWING_ACL, encoding="utf-8")
            broker.reload()
            await until(lambda: hq.seqs("receipts", epoch) == [1, 2, 3, 4, 5], 45)
            assert [hq.events[("receipts", epoch)][s]["n"] for s in range(1, 6)] == list(range(5))
            await until(lambda: "receipts" not in gw.uplink.parked)
            await until(lambda: not any(a.key == alert["key"] for a in gw.alerts.active()))
            await until(lambda: len(hq.seqs("alerts", epoch)) == 2)
            cleared = hq.events[("alerts", epoch)][2]
            assert (cleared["type"], cleared["key"]) == ("alert.cleared", alert["key"])
            validate_event(cleared)
            assert await drained(gw.outbox) == 0
    finally:
        hq.close()
        broker.stop()


@pytest.mark.slow
async def test_connection_cut_mid_flow_loses_nothing(tmp_path: Path, mosquitto: Broker) -> None:
    hq = FakeHq(mosquitto)
    try:
        async with (
            Proxy(mosquitto.port) as proxy,
            gateway(tmp_path / "g.db", proxy.port, FAST_RESEND) as gw,
        ):
            await asyncio.wait_for(gw.link.connected.wait(), patience(15))
            total = 0
            for _cut in range(3):
                pending = gw.outbox.append_many(
                    "stock", probes("s", ({"n": total + n} for n in range(3000)))
                )
                total += 3000
                published = gw.link.stats.publishes
                await pending
                await until(lambda p=published: gw.link.stats.publishes > p)  # on the wire now
                proxy.cut()
                await until(lambda: not gw.link.connected.is_set())
                await asyncio.wait_for(gw.link.connected.wait(), patience(30))
            await until(lambda: hq.seqs("stock", gw.outbox.epoch) == list(range(1, total + 1)))
            assert await drained(gw.outbox) == 0
            assert proxy.connections >= 4  # it really reconnected after each cut
    finally:
        hq.close()


@pytest.mark.slow
async def test_half_open_connection_is_detected_by_keepalive(
    tmp_path: Path, mosquitto: Broker
) -> None:
    hq = FakeHq(mosquitto)
    try:
        async with (
            within(50),
            Proxy(mosquitto.port) as proxy,
            gateway(tmp_path / "g.db", proxy.port, FAST_RESEND, keepalive_s=5) as gw,
        ):
            await asyncio.wait_for(gw.link.connected.wait(), patience(15))
            proxy.freeze()  # the network silently drops everything; no FIN, no RST
            await gw.outbox.append("alerts", probe("a", {"n": 1}))
            await until(lambda: not gw.link.connected.is_set(), 20)  # keepalive noticed
            proxy.cut()
            proxy.thaw()
            await until(lambda: hq.seqs("alerts", gw.outbox.epoch) == [1], 25)
            assert gw.link.stats.reconnects >= 1
    finally:
        hq.close()


async def test_hq_consumer_down_for_a_while(tmp_path: Path, mosquitto: Broker) -> None:
    settings = UplinkSettings(ack_timeout_s=1.0, messages_per_second=None)
    async with gateway(tmp_path / "g.db", mosquitto, settings) as gw:
        await asyncio.wait_for(gw.link.connected.wait(), patience(15))
        # Nobody consumes: the broker PUBACKs and drops the envelopes (no subscriber).
        await gw.outbox.append_many("receipts", probes("r", ({"n": n} for n in range(1000))))

        async def all_sent() -> StreamState | None:
            state = await stream_state(gw.outbox, "receipts")
            return state if state.sent_seq == 1000 else None

        state = await until_async(all_sent, what="every envelope PUBACKed")
        assert state.depth == 1000  # PUBACKed, yet nothing released
        hq = FakeHq(mosquitto)  # HQ comes back
        try:
            await until(lambda: hq.seqs("receipts", gw.outbox.epoch) == list(range(1, 1001)))
            assert await drained(gw.outbox) == 0
        finally:
            hq.close()


@pytest.mark.slow
async def test_budget_reached_during_an_outage_sheds_lossy_data_never_stock(
    tmp_path: Path, mosquitto: Broker
) -> None:
    budget = BufferBudget(
        budget_bytes=64 * 1024,
        alert_reserve_bytes=8 * 1024,
        shed_detail_at=0.4,
        shed_aggregate_at=0.7,
    )
    # HQ subscribes after the broker is back: what the store sends before that is lost at a
    # broker without persistence, and comes again after the ack timeout (short here).
    settings = UplinkSettings(messages_per_second=None, ack_timeout_s=3.0)
    async with gateway(tmp_path / "g.db", mosquitto, settings, budget=budget) as gw:
        await asyncio.wait_for(gw.link.connected.wait(), patience(15))
        mosquitto.kill()  # the WAN is down
        await until(lambda: not gw.link.connected.is_set())
        sent = {"dwell.visit": 0, "dwell.summary": 0}
        stock = 0
        pad = "p" * 100
        while not gw.outbox.pressure.shed.get("dwell/dwell.summary"):
            await gw.outbox.append_many(
                "dwell",
                probes("dwell.visit", ({"n": n, "pad": pad} for n in range(4))),
                shed=Shed.DETAIL,
            )
            sent["dwell.visit"] += 4
            await gw.outbox.append("dwell", probe("dwell.summary", {"pad": pad}))
            sent["dwell.summary"] += 1
            await gw.outbox.append("stock", probe("stock.changed", {"n": stock, "pad": pad}))
            stock += 1
        for _ in range(20):  # stock keeps being accepted while dwell is shed
            await gw.outbox.append("stock", probe("stock.changed", {"n": stock, "pad": pad}))
            stock += 1
        await until(lambda: any(a.key == PRESSURE_ALERT for a in gw.alerts.active()))
        [alert] = [a for a in gw.alerts.active() if a.key == PRESSURE_ALERT]
        assert alert.severity.value == "warning"  # only lossy data was turned away
        shed = gw.outbox.pressure.report()["shed"]
        assert shed["dwell/dwell.visit"] > 0
        assert shed["dwell/dwell.summary"] > 0
        assert not gw.outbox.pressure.refused

        mosquitto.start()  # back online: everything accepted reaches HQ
        hq = FakeHq(mosquitto)
        try:
            epoch = gw.outbox.epoch
            await until(lambda: len(hq.seqs("stock", epoch)) == stock)
            assert [hq.events[("stock", epoch)][s]["n"] for s in range(1, stock + 1)] == list(
                range(stock)
            )
            assert await drained(gw.outbox) in (0, 1)  # the clear may be on its way
            await until(lambda: not any(a.key == PRESSURE_ALERT for a in gw.alerts.active()))
            await until(
                lambda: any(
                    e["type"] == "alert.cleared"
                    for e in hq.events.get(("alerts", epoch), {}).values()
                )
            )
            dwell = list(hq.events[("dwell", epoch)].values())
            assert sorted(hq.events[("dwell", epoch)]) == list(range(1, len(dwell) + 1))
            received = {t: sum(e["type"] == t for e in dwell) for t in sent}
            alerts = sorted(hq.events[("alerts", epoch)].items())
            assert [e["type"] for _, e in alerts] == ["alert.raised", "alert.cleared"]
            final = alerts[-1][1]["details"]
            assert final["shed"] == {
                f"dwell/{t}": sent[t] - received[t] for t in ("dwell.visit", "dwell.summary")
            }
            assert final["refused"] == {}
        finally:
            hq.close()


async def test_envelopes_ahead_of_hq_stay_within_the_window(
    tmp_path: Path, mosquitto: Broker
) -> None:
    settings = UplinkSettings(
        messages_per_second=None, max_events_per_message=10, hq_window_messages=3
    )
    hq = FakeHq(mosquitto, ack=False)
    try:
        async with gateway(tmp_path / "g.db", mosquitto, settings) as gw:
            await gw.outbox.append_many("stock", probes("s", ({"n": n} for n in range(100))))
            await until(lambda: hq.envelopes == 3)

            async def window_sent() -> bool:
                return (await stream_state(gw.outbox, "stock")).sent_seq == 30

            await until_async(window_sent, what="the window's PUBACKs recorded")
            # The PUBACKs are in, and nothing beyond the window was published.
            assert gw.link.stats.publishes == 3
            assert hq.envelopes == 3
            assert hq.seqs("stock", gw.outbox.epoch) == list(range(1, 31))
            hq.ack = True  # HQ takes custody of 1..30: the window moves on
            hq.publish_raw(
                "retail/v1/s1/down/ack",
                f'{{"stream":"stock","epoch":"{gw.outbox.epoch}","seq":30}}'.encode(),
            )
            await until(lambda: hq.seqs("stock", gw.outbox.epoch) == list(range(1, 101)))
            assert await drained(gw.outbox) == 0
            assert hq.duplicates == 0  # moved on without re-sending anything
    finally:
        hq.close()


def _fill(mount_point: Path) -> None:
    """Fill the filesystem to the last byte with a file that is not the database."""
    fd = os.open(mount_point / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (64 * 1024, 4096, 512, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)


async def test_a_full_disk_while_the_backlog_drains_is_logged_once_not_per_envelope(
    tmp_path: Path, mosquitto: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    """Item E (a full disk must not flood the log): the backlog still goes to HQ while the
    disk is full, but the sent and acked marks cannot be recorded. That is one condition,
    logged once when it starts (and once when it ends), not an ERROR per envelope and ack."""
    caplog.set_level(logging.INFO)
    hq = FakeHq(mosquitto)
    clock = SystemClock()
    try:
        with tmpfs(tmp_path / "disk", size="8m") as disk:
            async with Database.running(disk / "g.db", clock=clock) as db:
                outbox = Outbox(db, clock, events=PROBES)
                await outbox.open(STREAMS)
                for start in range(0, 2000, 100):
                    await outbox.append_many(
                        "stock",
                        probes("stock.changed", ({"n": n} for n in range(start, start + 100))),
                    )
                await db.maintenance()  # the WAL truncated: any write now needs room
                _fill(disk)
                config = MqttConfig(
                    host=mosquitto.host, port=mosquitto.port, tls=False, allow_plaintext=True
                )
                settings = UplinkSettings(messages_per_second=None, max_events_per_message=20)
                link, uplink = connect_outbox(
                    outbox,
                    config=config,
                    store_id="s1",
                    boot=db.boot,
                    clock=clock,
                    settings=settings,
                )
                async with asyncio.TaskGroup() as group:
                    tasks = [
                        group.create_task(link.run(), name="mqtt.link"),
                        group.create_task(uplink.run(), name="uplink"),
                    ]
                    try:
                        epoch = outbox.epoch
                        await until(lambda: hq.seqs("stock", epoch) == list(range(1, 2001)), 60)
                        await until(lambda: db.full_since is not None)  # marks refused
                    finally:
                        for task in tasks:
                            task.cancel()
    finally:
        hq.close()
    assert hq.envelopes >= 100
    errors = [r.getMessage() for r in caplog.records if r.name == "gateway.sync.uplink"]
    assert len([e for e in errors if "bookkeeping" in e]) <= 1, errors


@pytest.mark.slow
async def test_a_parked_stream_on_a_full_disk_does_not_stop_the_uplink(tmp_path: Path) -> None:
    """The broker refuses a stream while the disk is full: its alert cannot be stored (it is
    active in memory). That storage failure must not end the uplink task — in the daemon, its
    task group, so the whole process — and the stream flows once the broker takes it."""
    acl = tmp_path / "acl"
    acl.write_text(REFUSING_ACL, encoding="utf-8")
    broker = Broker(tmp_path, extra=f"acl_file {acl}")
    broker.start()
    hq = FakeHq(broker)
    clock = SystemClock()
    key = "uplink.refused:receipts"
    try:
        with tmpfs(tmp_path / "disk", size="8m") as disk:
            async with Database.running(disk / "g.db", clock=clock) as db:
                outbox = Outbox(db, clock, events=PROBES)
                await outbox.open(STREAMS)
                alerts = Alerts(db, outbox, clock)
                await alerts.load()
                await outbox.append_many("receipts", probes("r", ({"n": n} for n in range(5))))
                await db.maintenance()  # the WAL truncated: any write now needs room
                _fill(disk)
                config = MqttConfig(
                    host=broker.host, port=broker.port, tls=False, allow_plaintext=True
                )
                link, uplink = connect_outbox(
                    outbox,
                    config=config,
                    store_id="s1",
                    boot=db.boot,
                    clock=clock,
                    settings=UplinkSettings(messages_per_second=None),
                    alerts=alerts,
                )
                async with asyncio.TaskGroup() as group:
                    tasks = [
                        group.create_task(link.run(), name="mqtt.link"),
                        group.create_task(uplink.run(), name="uplink"),
                    ]
                    try:
                        # Raised (in memory), and its write refused.
                        await until(
                            lambda: alerts.get(key) is not None and db.full_since is not None
                        )
                        (disk / "filler").unlink()
                        acl.write_text(ALLOWING_ACL, encoding="utf-8")
                        broker.reload()
                        epoch = outbox.epoch
                        await until(lambda: hq.seqs("receipts", epoch) == [1, 2, 3, 4, 5], 45)
                        await until(lambda: alerts.get(key) is None)
                    finally:
                        for task in tasks:
                            task.cancel()
    finally:
        hq.close()
        broker.stop()
