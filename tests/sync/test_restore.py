"""A database that goes back in time (restored from a copy, a lost WAL) must not give seqs HQ
already holds to new events: the gateway notices and starts a new epoch for those streams."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway.clock import SystemClock
from gateway.hq.tail import HqConsumerConfig, HqSettings, tail
from gateway.sync.config import MqttConfig
from tests.store.probes import probes
from tests.support.broker import Broker
from tests.sync.support import drained, gateway, until


class ReferenceHq:
    """``storegw hq tail`` (the reference consumer) in a task, its output kept as lines."""

    def __init__(self, path: Path, broker: Broker) -> None:
        self.out = io.StringIO()
        self.settings = HqSettings(
            mqtt=MqttConfig(host=broker.host, port=broker.port, tls=False, allow_plaintext=True),
            hq=HqConsumerConfig(database=path),
        )

    def events(self, stream: str) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.out.getvalue().splitlines()]
        return [line for line in lines if line["stream"] == stream]

    def values(self, stream: str) -> list[Any]:
        return [event.get("n") for event in self.events(stream)]


@asynccontextmanager
async def reference_hq(path: Path, broker: Broker) -> AsyncIterator[ReferenceHq]:
    hq = ReferenceHq(path, broker)
    task = asyncio.create_task(tail(hq.settings, clock=SystemClock(), out=hq.out), name="hq")
    try:
        # HQ listens before the store sends (else the store re-sends only after its ack timeout)
        await until(lambda: broker.subscribed("retail/v1/+/up/#"))
        yield hq
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_events_written_after_a_restore_all_reach_hq(
    tmp_path: Path, mosquitto: Broker
) -> None:
    database = tmp_path / "g.db"
    backup = tmp_path / "backup.db"
    async with reference_hq(tmp_path / "hq.db", mosquitto) as hq:
        async with gateway(database, mosquitto) as gw:
            await gw.outbox.append_many("stock", probes("s", ({"n": n} for n in range(100))))
            assert await drained(gw.outbox) == 0
            epoch = gw.outbox.epoch
        shutil.copyfile(database, backup)  # the nightly backup, the daemon stopped
        async with gateway(database, mosquitto) as gw:
            await gw.outbox.append_many("stock", probes("s", ({"n": n} for n in range(100, 300))))
            assert await drained(gw.outbox) == 0
        await until(lambda: hq.values("stock") == list(range(300)))

        # The box's disk is replaced; the technician restores last night's copy.
        for leftover in tmp_path.glob("g.db-*"):
            leftover.unlink()
        shutil.copyfile(backup, database)
        async with gateway(database, mosquitto) as gw:
            await gw.outbox.append_many("stock", probes("s", ({"n": n} for n in range(1000, 1150))))
            await until(lambda: hq.values("stock")[300:] == list(range(1000, 1150)))
            assert await drained(gw.outbox) == 0
            later = hq.events("stock")[300:]
            assert {event["epoch"] for event in later} == {gw.outbox.epoch_of("stock")} != {epoch}
            assert [event["seq"] for event in later] == list(range(1, 151))
            assert gw.outbox.epoch_of("receipts") == epoch  # nothing of it had left
            # Raised at the start, cleared once HQ holds events of the new epoch.
            await until(lambda: len(hq.events("alerts")) == 2)
            raised, cleared = hq.events("alerts")
            assert (raised["type"], raised["key"]) == ("alert.raised", "outbox.epoch:stock")
            assert raised["details"]["old_epoch"] == epoch
            assert "seqs up to 300" in raised["details"]["reason"]
            assert (cleared["type"], cleared["key"]) == ("alert.cleared", "outbox.epoch:stock")


async def test_restored_with_its_high_water_file_hq_s_watermark_gives_it_away(
    tmp_path: Path, mosquitto: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    """The whole state directory restored (the high-water file with the database): HQ's
    first ack beyond the head starts the new epoch; HQ flags the conflicting seqs."""
    caplog.set_level(logging.WARNING)
    database = tmp_path / "state" / "g.db"
    database.parent.mkdir()
    backup = tmp_path / "backup"
    async with reference_hq(tmp_path / "hq.db", mosquitto) as hq:
        async with gateway(database, mosquitto) as gw:
            await gw.outbox.append_many("stock", probes("s", ({"n": n} for n in range(100))))
            assert await drained(gw.outbox) == 0
            epoch = gw.outbox.epoch
        shutil.copytree(database.parent, backup)
        async with gateway(database, mosquitto) as gw:
            await gw.outbox.append_many("stock", probes("s", ({"n": n} for n in range(100, 300))))
            assert await drained(gw.outbox) == 0
        await until(lambda: hq.values("stock") == list(range(300)))

        shutil.rmtree(database.parent)
        shutil.copytree(backup, database.parent)
        async with gateway(database, mosquitto) as gw:
            assert gw.outbox.epoch_of("stock") == epoch  # nothing to notice at open
            await gw.outbox.append_many("stock", probes("s", ({"n": n} for n in range(1000, 1150))))
            await until(lambda: hq.values("stock")[300:] == list(range(1000, 1150)))
            assert gw.outbox.epoch_of("stock") != epoch
            later = hq.events("stock")[300:]
            assert {event["epoch"] for event in later} == {gw.outbox.epoch_of("stock")}
            assert [event["seq"] for event in later] == list(range(1, 151))
            # Raised once, cleared once HQ holds the 150 re-sequenced events.
            await until(lambda: len(hq.events("alerts")) == 2)
            raised, cleared = hq.events("alerts")
            assert (raised["type"], raised["key"]) == ("alert.raised", "outbox.epoch:stock")
            assert raised["details"]["resequenced"] == 150
            assert raised["details"]["old_epoch"] == epoch
            assert (cleared["type"], cleared["key"]) == ("alert.cleared", "outbox.epoch:stock")
            assert not gw.alerts.active()
            assert await drained(gw.outbox) == 0
    conflicts = [r.getMessage() for r in caplog.records if r.name == "gateway.hq.consumer"]
    assert conflicts
    assert all(f"conflict in s1/stock epoch {epoch}" in line for line in conflicts)
    summary = [r.getMessage() for r in caplog.records if r.name == "gateway.hq.tail"]
    assert f"conflicts in s1/stock epoch {epoch}: 150 seq(s) between 101 and 250" in summary[-1]
