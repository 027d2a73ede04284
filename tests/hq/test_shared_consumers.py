"""Several ``storegw hq tail`` processes sharing two stores' streams through ``$share/``, on
one real mosquitto and one real PostgreSQL, SIGKILLed mid-flow while the stores (a real
gateway outbox and uplink each) keep sending: every event is stored exactly once and each
stream's custody ends at its last seq. And PostgreSQL stopped under a running consumer: no
acks, an exit code, nothing lost."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from gateway.store.outbox import Outbox
from gateway.sync.uplink import UplinkSettings
from tests.hq.processes import TailProcess
from tests.store.probes import probe
from tests.support.broker import Broker
from tests.support.postgres import PostgresServer
from tests.sync.support import depth, drained, gateway, until

pytestmark = pytest.mark.slow

_SHARED = "$share/ingest/retail/v1/+/up/#"
_STREAMS = ("stock", "dwell")
# Re-sends come quickly, so a killed consumer's envelopes are not waited for long.
_UPLINK = UplinkSettings(messages_per_second=None, ack_timeout_s=2.0, max_events_per_message=40)


class _Committed:
    """Counts what HQ committed, on one connection of its own."""

    def __init__(self, url: str) -> None:
        self._connection = psycopg.connect(url, autocommit=True)

    def events(self) -> int:
        try:
            row = self._connection.execute(
                "SELECT count(*) FROM pg_tables WHERE tablename = 'hq_event_log'"
            ).fetchone()
            if not row or not row[0]:
                return 0
            row = self._connection.execute("SELECT count(*) FROM hq_events").fetchone()
        except psycopg.OperationalError:
            return -1
        return int(row[0]) if row else 0

    def close(self) -> None:
        self._connection.close()


@pytest.fixture
def committed(postgres_url: str) -> Iterator[_Committed]:
    counter = _Committed(postgres_url)
    yield counter
    counter.close()


async def _produce(outbox: Outbox, start: int, count: int) -> None:
    """``count`` events spread over two streams, a few at a time, as a store keeps sending."""
    for first in range(start, start + count, 40):
        numbers = range(first, min(first + 40, start + count))
        await asyncio.gather(
            *(outbox.append(_STREAMS[n % 2], probe("stock.changed", {"n": n})) for n in numbers)
        )
        await asyncio.sleep(0.02)


def _assert_exactly_once(url: str, epoch: str, total: int, store: str = "s1") -> None:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT stream, count(*), count(DISTINCT seq), max(seq), count(DISTINCT event->>'n') "
            "FROM hq_events WHERE store = %s AND epoch = %s AND stream = ANY(%s) "
            "GROUP BY stream ORDER BY 1",
            (store, epoch, list(_STREAMS)),
        ).fetchall()
        marks = connection.execute(
            "SELECT stream, seq FROM hq_watermarks WHERE store = %s AND epoch = %s "
            "AND stream = ANY(%s) ORDER BY 1",
            (store, epoch, list(_STREAMS)),
        ).fetchall()
        conflicts = connection.execute("SELECT count(*) FROM hq_conflicts").fetchone()
    assert conflicts == (0,)
    half = total // 2
    assert rows == [("dwell", half, half, half, half), ("stock", half, half, half, half)]
    assert marks == [("dwell", half), ("stock", half)]


@pytest.mark.parametrize("consumers", [1, 2, 4])
async def test_consumers_killed_mid_flow_store_every_event_exactly_once(
    tmp_path: Path, mosquitto: Broker, postgres_url: str, committed: _Committed, consumers: int
) -> None:
    total = 1600  # per store
    tails = [
        TailProcess(tmp_path, mosquitto, postgres_url, client_id=f"hq-{i}", group="ingest")
        for i in range(consumers)
    ]
    try:
        for tail in tails:
            tail.start()
        for tail in tails:
            await until(lambda tail=tail: mosquitto.subscribed(_SHARED, tail.client_id))
        async with (
            gateway(tmp_path / "a.db", mosquitto, _UPLINK, store_id="store-a") as store_a,
            gateway(tmp_path / "b.db", mosquitto, _UPLINK, store_id="store-b") as store_b,
        ):
            stores = {"store-a": store_a, "store-b": store_b}
            producing = [
                asyncio.create_task(_produce(gw.outbox, 0, total), name=f"store[{name}]")
                for name, gw in stores.items()
            ]
            try:
                # Each consumer is killed once while events flow, then started again (same
                # session), as systemd would; the others go on meanwhile.
                for round_, tail in enumerate(tails):
                    goal = (round_ + 1) * 2 * total // (consumers + 2)
                    await until(lambda goal=goal: committed.events() >= goal, timeout=60)
                    tail.kill()
                    tail.start()
                await asyncio.gather(*producing)
            finally:
                for task in producing:
                    task.cancel()
            for gw in stores.values():  # every event acked: custody at HQ
                assert await drained(gw.outbox, 90) == 0
            epochs = {name: gw.outbox.epoch for name, gw in stores.items()}
    finally:
        for tail in tails:
            tail.stop()
    assert all(tail.returncode() != 74 for tail in tails), [t.log() for t in tails]
    for store, epoch in epochs.items():
        _assert_exactly_once(postgres_url, epoch, total, store)


async def test_without_postgres_a_consumer_acks_nothing_then_exits_74_and_nothing_is_lost(
    tmp_path: Path,
    mosquitto: Broker,
    postgres_server: PostgresServer,
    postgres_url: str,
    committed: _Committed,
) -> None:
    tail = TailProcess(tmp_path, mosquitto, postgres_url, client_id="hq-0", group="ingest")
    tail.start()
    try:
        await until(lambda: mosquitto.subscribed(_SHARED, "hq-0"))
        async with gateway(tmp_path / "g.db", mosquitto, _UPLINK) as gw:
            await _produce(gw.outbox, 0, 400)
            assert await drained(gw.outbox, 30) == 0
            # A restart shorter than database_outage_exit_s (4 s): the consumer rides it out.
            postgres_server.stop()
            await _produce(gw.outbox, 400, 200)
            await until(lambda: "unreachable" in tail.log())
            postgres_server.start()
            assert await drained(gw.outbox, 60) == 0
            assert tail.returncode() is None
            # A longer outage: nothing is acked, the consumer stops with 74 (EX_IOERR).
            postgres_server.stop()
            await _produce(gw.outbox, 600, 200)
            await until(lambda: tail.returncode() is not None, timeout=60)
            assert tail.returncode() == 74
            assert "database_outage_exit_s" in tail.log()
            assert await depth(gw.outbox) >= 200  # still at the store, not acked
            # PostgreSQL and the consumer back (systemd restarts it): all of it arrives.
            postgres_server.start()
            tail.start()
            assert await drained(gw.outbox, 60) == 0
            epoch = gw.outbox.epoch
    finally:
        tail.stop()
        postgres_server.ensure_running()
    _assert_exactly_once(postgres_url, epoch, 800)
