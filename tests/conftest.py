"""Suite-wide fixtures: leak detection, a real mosquitto broker; the per-test timeout
stretched by ``TEST_TIMEOUT_FACTOR`` (see tests/waiting.py). Fixtures only: the helpers tests
import live in tests/support/ (``Broker``, ``tmpfs``...)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from gateway.wire.envelope import CHECK_TRUSTED_ENV, check_trusted_events
from tests.support.broker import Broker
from tests.support.dbus import PrivateBus
from tests.waiting import TIMEOUT_FACTOR

# Hypothesis times each example (200 ms by default) and its data generation: timing assertions
# that a busy machine fails. The properties are what the suite checks, not the speed.
settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")

# Events built trusted (EventBody.trusted) are validated in full, here and in the daemons the
# tests start: a producer emitting what the schema does not describe fails its tests.
os.environ[CHECK_TRUSTED_ENV] = "1"
check_trusted_events(True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A slower machine (``TEST_TIMEOUT_FACTOR`` above 1) gets every per-test timeout stretched
    as much as the waits inside the tests."""
    if TIMEOUT_FACTOR == 1:
        return
    default = float(config.getoption("timeout", None) or config.getini("timeout") or 0)
    for item in items:
        marker = item.get_closest_marker("timeout")
        seconds = default
        if marker is not None:
            seconds = float(marker.args[0] if marker.args else marker.kwargs.get("timeout", 0))
        if seconds > 0:
            item.add_marker(pytest.mark.timeout(seconds * TIMEOUT_FACTOR), append=False)


@pytest.fixture(autouse=True)
async def _no_leaked_tasks_or_threads() -> AsyncIterator[None]:
    """Fail any test that leaves asyncio tasks or threads running behind it."""
    threads_before = set(threading.enumerate())
    tasks_before = asyncio.all_tasks()
    yield
    current = asyncio.current_task()
    leaked_tasks = [
        task
        for task in asyncio.all_tasks() - tasks_before
        if task is not current and not task.done()
    ]
    for task in leaked_tasks:
        task.cancel()
    assert not leaked_tasks, f"test leaked asyncio tasks: {[t.get_name() for t in leaked_tasks]}"
    deadline = time.monotonic() + 2.0
    while True:  # worker threads (aiosqlite, executors) may need a moment to finish
        leaked = [
            thread
            for thread in set(threading.enumerate()) - threads_before
            if thread.is_alive() and not thread.daemon
        ]
        if not leaked or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    assert not leaked, f"test leaked threads: {[t.name for t in leaked]}"


@pytest.fixture
def system_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivateBus]:
    """A private dbus-daemon that this process (bleak) takes for the system bus."""
    bus = PrivateBus(tmp_path).start()
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.address)
    try:
        yield bus
    finally:
        bus.stop()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    """A real mosquitto on a free loopback port, owned by this test (never the one on 1883)."""
    broker = Broker(tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
