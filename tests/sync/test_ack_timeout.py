"""The ack timeout counts from each envelope's PUBACK, never from the connection or the
stream's last ack (docs/protocol.md, "down/ack")."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.clock import FakeClock
from gateway.store import Database
from gateway.store.outbox import Outbox
from gateway.sync.config import MqttConfig
from gateway.sync.uplink import CustodyTimer, UplinkSettings, connect_outbox
from tests.store.probes import PROBES, probe
from tests.support.broker import Broker
from tests.sync.fake_hq import FakeHq
from tests.sync.support import drained, until

STREAMS = ("stock", "dwell", "receipts", "alerts")


@pytest.mark.slow  # HQ takes 1.5 s per ack, on purpose
async def test_an_idle_stream_is_not_resent_when_hq_acks_normally(
    tmp_path: Path, mosquitto: Broker
) -> None:
    """HQ is healthy and acks every envelope well within the ack timeout (after a commit that
    takes a moment); between envelopes the stream stays idle far longer than the timeout (the
    fake clock jumps). Nothing may be re-sent."""
    clock = FakeClock()
    hq = FakeHq(mosquitto, ack_delay_s=1.5)
    try:
        async with Database.running(tmp_path / "g.db", clock=clock) as db:
            outbox = Outbox(db, clock, events=PROBES)
            await outbox.open(STREAMS)
            config = MqttConfig(
                host=mosquitto.host, port=mosquitto.port, tls=False, allow_plaintext=True
            )
            link, uplink = connect_outbox(
                outbox,
                config=config,
                store_id="s1",
                boot=db.boot,
                clock=clock,
                settings=UplinkSettings(ack_timeout_s=5.0, messages_per_second=None),
            )
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(link.run(), name="mqtt.link"),
                    group.create_task(uplink.run(), name="uplink"),
                ]
                try:
                    epoch = outbox.epoch
                    for n in range(1, 5):
                        await outbox.append("alerts", probe("alert.raised", {"n": n}))
                        # QoS 1 keeps order on the connection: a re-sent earlier envelope
                        # reaches HQ before this event does, so it is counted by now.
                        await until(lambda n=n: hq.seqs("alerts", epoch) == list(range(1, n + 1)))
                        assert await drained(outbox) == 0
                        clock.advance(60.0)  # idle for 12 ack timeouts
                    assert hq.duplicates == 0
                finally:
                    for task in tasks:
                        task.cancel()
    finally:
        hq.close()


def test_the_wait_starts_at_the_puback_not_at_the_last_ack_or_the_connection() -> None:
    clock = FakeClock()
    timer = CustodyTimer(30.0)  # a new connection: nothing waits
    clock.advance(100.328)
    timer.pubacked(1, clock.monotonic())  # sent long after the connection
    clock.advance(1.004)
    assert not timer.expired(clock.monotonic())  # the field report: re-sent 1 s later
    timer.watermark_moved(1, clock.monotonic())

    clock.advance(3600)  # the stream is idle for an hour, HQ healthy
    timer.pubacked(2, clock.monotonic())
    assert not timer.expired(clock.monotonic())
    clock.advance(30)
    assert not timer.expired(clock.monotonic())
    clock.advance(0.1)
    assert timer.expired(clock.monotonic())  # 30 s after its own PUBACK: HQ is silent


def test_each_envelope_waits_from_its_puback_or_from_the_last_watermark_move() -> None:
    clock = FakeClock()
    timer = CustodyTimer(30.0)
    timer.pubacked(10, clock.monotonic())
    clock.advance(20)
    timer.pubacked(20, clock.monotonic())
    clock.advance(5)
    timer.watermark_moved(10, clock.monotonic())  # HQ works through its queue
    clock.advance(29)
    assert not timer.expired(clock.monotonic())  # 54 s after its PUBACK, 29 s after the move
    clock.advance(2)
    assert timer.expired(clock.monotonic())
    timer.watermark_moved(20, clock.monotonic())
    assert not timer.expired(clock.monotonic() + 3600)  # nothing waits


def test_envelopes_pubacked_after_a_rewind_are_covered_out_of_order() -> None:
    clock = FakeClock()
    timer = CustodyTimer(30.0)
    timer.pubacked(50, clock.monotonic())
    clock.advance(31)
    assert timer.expired(clock.monotonic())
    timer.rewound()
    timer.pubacked(60, clock.monotonic())  # in flight before the rewind, PUBACKed after it
    timer.pubacked(30, clock.monotonic())  # the re-sent window
    timer.watermark_moved(60, clock.monotonic())
    assert not timer.expired(clock.monotonic() + 3600)


def test_the_ack_timeout_doubles_while_hq_stays_silent() -> None:
    clock = FakeClock()
    timer = CustodyTimer(30.0)

    def rewinds(seconds: int) -> list[int]:
        """The seconds at which the window was re-sent; every re-send is PUBACKed at once."""
        at = []
        timer.pubacked(5, clock.monotonic())
        for second in range(1, seconds + 1):
            clock.advance(1)
            if timer.expired(clock.monotonic()):
                at.append(second)
                timer.rewound()
                timer.pubacked(5, clock.monotonic())
        return at

    # 30 s, then 60, 120 and no longer: HQ down for hours gets a re-send per 2 min.
    assert rewinds(600) == [31, 92, 213, 334, 455, 576]
    timer.watermark_moved(2, clock.monotonic())  # HQ spoke: the configured timeout again
    assert timer.timeout_s == 30.0
    assert rewinds(100) == [31, 92]


def test_an_envelope_hq_acked_before_its_puback_was_settled_waits_for_nothing() -> None:
    """HQ's ack and the broker's PUBACK race: the link's dispatch task may take HQ's
    watermark before the send loop settles the PUBACK of the same envelope (the send loop is
    busy reading the next envelope or pacing the catch-up). That envelope is in HQ's custody
    already: it must never start a wait that the idle stream then 'times out'."""
    clock = FakeClock()
    timer = CustodyTimer(30.0)
    timer.watermark_moved(10, clock.monotonic())  # HQ's ack for seqs up to 10 came first
    timer.pubacked(10, clock.monotonic())  # the PUBACK of the envelope ending at 10, later
    timer.pubacked(8, clock.monotonic())  # an earlier one, settled later still
    clock.advance(3600)  # the stream stays idle, HQ healthy
    assert not timer.expired(clock.monotonic())
    timer.pubacked(12, clock.monotonic())  # beyond the watermark: that one does wait
    clock.advance(30.1)
    assert timer.expired(clock.monotonic())
