"""Small helpers shared by the sync tests."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from gateway.store.outbox import Outbox
from gateway.sync.link import MqttLink


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


async def until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait for a condition set by another thread or task (fails, never times a test)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


async def depth(outbox: Outbox) -> int:
    return sum(state.depth for state in await outbox.states())


async def drained(outbox: Outbox, timeout: float = 30.0) -> int:
    """Wait until HQ took custody of everything; returns what is left (0 when drained)."""
    deadline = time.monotonic() + timeout
    while (left := await depth(outbox)) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return left
