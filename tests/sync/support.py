"""Small helpers shared by the sync tests."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from gateway.alerts import Alerts
from gateway.clock import SystemClock
from gateway.store import Database
from gateway.store.budget import BufferBudget
from gateway.store.outbox import Outbox
from gateway.sync.config import MqttConfig
from gateway.sync.keeper import OutboxKeeper
from gateway.sync.link import MqttLink
from gateway.sync.uplink import Uplink, UplinkSettings, connect_outbox
from tests.store.probes import PROBES
from tests.support.broker import Broker
from tests.waiting import patience

T = TypeVar("T")


@asynccontextmanager
async def running(link: MqttLink) -> AsyncIterator[MqttLink]:
    """Run the link's connection loop for the duration of the block."""
    task = asyncio.create_task(link.run(), name="mqtt.link")
    try:
        yield link
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(predicate: Callable[[], T], timeout: float = 30.0) -> T:
    """Wait for a condition set by another thread or task (fails, never times a test); returns
    the predicate's value, the state the wait saw. ``timeout`` is stretched by
    ``TEST_TIMEOUT_FACTOR`` (tests/waiting.py)."""
    deadline = time.monotonic() + patience(timeout)
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached; tasks:\n" + _task_stacks())
        await asyncio.sleep(0.02)
    return value


def _task_stacks() -> str:
    """Where every task waits: what a hung condition needs to be understood."""
    lines = []
    for task in asyncio.all_tasks():
        frames = task.get_stack()
        where = " <- ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in reversed(frames))
        lines.append(f"  {task.get_name()}: {where or 'not started'}")
    return "\n".join(sorted(lines))


async def depth(outbox: Outbox) -> int:
    return sum(state.depth for state in await outbox.states())


async def drained(outbox: Outbox, timeout: float = 30.0) -> int:
    """Wait until HQ took custody of everything; returns what is left (0 when drained)."""
    deadline = time.monotonic() + patience(timeout)
    while (left := await depth(outbox)) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return left


@asynccontextmanager
async def within(seconds: float) -> AsyncIterator[None]:
    """Fail (with every task's whereabouts) if the block takes longer than ``seconds``
    (stretched by ``TEST_TIMEOUT_FACTOR``): a hang reported with its cause instead of a bare
    test timeout."""
    seconds = patience(seconds)
    stacks: list[str] = []
    loop = asyncio.get_running_loop()
    capture = loop.call_later(max(0.0, seconds - 0.05), lambda: stacks.append(_task_stacks()))
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        where = stacks[0] if stacks else _task_stacks()
        raise AssertionError(f"took longer than {seconds} s; tasks:\n{where}") from None
    finally:
        capture.cancel()


STREAMS = ("stock", "dwell", "receipts", "alerts")


@dataclass
class Gateway:
    db: Database
    outbox: Outbox
    link: MqttLink
    uplink: Uplink
    alerts: Alerts


@asynccontextmanager
async def gateway(
    path: Path,
    broker: Broker | int,
    settings: UplinkSettings | None = None,
    *,
    keepalive_s: int = 60,
    budget: BufferBudget | None = None,
    store_id: str = "s1",
) -> AsyncIterator[Gateway]:
    """Outbox + link + uplink + alerts + keeper against a broker, or a port (e.g. a proxy's)."""
    clock = SystemClock()
    port = broker if isinstance(broker, int) else broker.port
    async with Database.running(path, clock=clock) as db:
        outbox = Outbox(db, clock, budget, events=PROBES)
        await outbox.open(STREAMS)
        alerts = Alerts(db, outbox, clock)
        await alerts.load()
        config = MqttConfig(
            host="127.0.0.1", port=port, tls=False, allow_plaintext=True, keepalive_s=keepalive_s
        )
        link, uplink = connect_outbox(
            outbox,
            config=config,
            store_id=store_id,
            boot=db.boot,
            clock=clock,
            settings=settings or UplinkSettings(messages_per_second=None),
            alerts=alerts,
        )
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(link.run(), name="mqtt.link"),
                group.create_task(uplink.run(), name="uplink"),
                group.create_task(
                    OutboxKeeper(outbox, alerts, clock, ttl_s={}, tick_s=0.2).run(),
                    name="outbox.keeper",
                ),
            ]
            try:
                yield Gateway(db, outbox, link, uplink, alerts)
            finally:
                for task in tasks:
                    task.cancel()
