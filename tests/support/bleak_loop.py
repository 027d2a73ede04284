"""bleak keeps one BlueZ manager (a D-Bus connection and a watcher task) per event loop for the
life of the process; a test's loop ends with the test, so a test releases it at its end."""

from __future__ import annotations

import asyncio
import contextlib


async def release_bleak() -> None:
    """Disconnect this loop's bleak BlueZ manager, if any, and let its watcher task end."""
    from bleak.backends.bluezdbus import manager

    instance = manager._global_instances.pop(asyncio.get_running_loop(), None)
    if instance is None:
        return
    bus, task = instance._bus, instance._bus_watcher_task
    if bus is not None:
        bus.disconnect()
    if task is not None:
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, 5)
