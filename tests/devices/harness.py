"""Shared helpers for the simulated-driver tests: drivers built through the real entry points."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from gateway.clock import Clock, FakeClock
from gateway.drivers.contracts import DriverContext, DriverPlugin, InstanceMemory, Reading
from gateway.drivers.registry import DriverRegistry
from tests.waiting import patience

REGISTRY = DriverRegistry.from_entry_points()


def plugin(name: str) -> DriverPlugin:
    return REGISTRY.load(name)


def make(
    name: str,
    instance: str = "dev",
    *,
    clock: Clock | None = None,
    memory: InstanceMemory | None = None,
    **options: Any,
) -> Any:
    """A driver from its plugin, options validated by the plugin's own model. Pass the same
    ``memory`` to build driver objects of one instance as the supervisor does on restarts."""
    chosen = plugin(name)
    context = DriverContext(instance, clock or FakeClock(), memory or InstanceMemory())
    return chosen.create(context, chosen.options_model.model_validate(options))


async def take(
    readings: AsyncIterator[Reading], count: int, kind: type[Any] = object, *, within: float = 5.0
) -> list[Any]:
    """The first ``count`` readings of ``kind``; the iterator is always closed."""
    found: list[Any] = []
    try:
        async with asyncio.timeout(patience(within)):
            async for reading in readings:
                if isinstance(reading, kind):
                    found.append(reading)
                    if len(found) >= count:
                        break
    finally:
        await readings.aclose()  # type: ignore[attr-defined]
    return found
