"""Helpers for the ``esl.oepl`` tests: a running driver against a fake access point, its
readings collected as they come."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import queue
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from devices.simulated.oepl_ap import FakeAccessPoint
from gateway.clock import ClockSyncSource, SystemClock
from gateway.drivers.contracts import (
    InstanceMemory,
    LabelContent,
    LabelModel,
    LabelPalette,
    LabelReport,
    LabelReportKind,
    Reading,
)
from tests.devices.harness import make
from tests.waiting import patience, until

PANEL = LabelModel(296, 128, LabelPalette.BWR, has_led=True)


def content(label: str, text: str, model: LabelModel = PANEL) -> LabelContent:
    image = Image.new("P", (model.width, model.height), 0)
    image.putpalette([255, 255, 255, 0, 0, 0, 255, 0, 0])
    for index, byte in enumerate(text.encode()):
        image.putpixel(((index * 13 + byte) % model.width, byte % model.height), 1 + byte % 2)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = buffer.getvalue()
    return LabelContent(label, data, hashlib.sha256(data).hexdigest(), model)


@dataclass
class Running:
    driver: Any
    readings: list[Reading] = field(default_factory=list)
    error: BaseException | None = None

    def reports(self, kind: LabelReportKind, label: str | None = None) -> list[LabelReport]:
        return [
            r
            for r in self.readings
            if isinstance(r, LabelReport)
            and r.kind is kind
            and (label is None or r.label_id == label)
        ]

    async def confirmed(self, label: str, content_hash: str, *, within: float = 10.0) -> None:
        await until(
            lambda: any(
                r.content_hash == content_hash
                for r in self.reports(LabelReportKind.CONFIRMED, label)
            ),
            within=within,
            what=f"{label} confirmed",
        )


def nothing_listening() -> str:
    """An address where no access point answers (a port just freed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@contextlib.asynccontextmanager
async def running(
    ap: FakeAccessPoint,
    instance: str = "ap-1",
    memory: InstanceMemory | None = None,
    **options: Any,
) -> AsyncIterator[Running]:
    clock = SystemClock(sync=ClockSyncSource.ASSUME)
    driver = make(
        "esl.oepl",
        instance,
        clock=clock,
        memory=memory,
        url=ap.url,
        busy_backoff_s=0.01,
        **options,
    )
    state = Running(driver)
    try:
        await driver.open()
    except BaseException:
        await driver.close()
        raise

    async def collect() -> None:
        try:
            async for reading in driver.readings():
                state.readings.append(reading)
        except Exception as exc:
            state.error = exc

    task = asyncio.create_task(collect())
    try:
        await until(lambda: state.readings or state.error, within=10, what="first reading")
        yield state
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await driver.close()


@contextlib.contextmanager
def access_point_in_thread(**options: Any) -> Iterator[FakeAccessPoint]:
    """A fake access point served from its own thread and event loop, for tests driving a
    daemon subprocess synchronously."""
    started: queue.Queue[FakeAccessPoint | BaseException] = queue.Queue()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        try:
            async with FakeAccessPoint(**options) as ap:
                started.put(ap)
                await stop.wait()
        except BaseException as exc:
            started.put(exc)
            raise

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    ap = started.get(timeout=patience(30))
    if isinstance(ap, BaseException):
        raise ap
    try:
        yield ap
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=patience(30))
        loop.close()
