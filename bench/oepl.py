"""esl.oepl throughput: labels handed over and confirmed per second, radio timing off.

The fake OpenEPaperLink access point (devices/simulated/oepl_ap.py) runs in a child process
with ``radio_s = 0`` (a delivery takes no air time, so the gateway side is what is measured).
In this process, on one core, rounds alternate between

- the driver, running across the rounds as the daemon runs it: ``push()`` of every label (16
  in flight) while its ``readings()`` count the ``CONFIRMED`` reports (each one the tag's own
  "xfer complete", matched to the job); and
- the baseline: a bare aiohttp client uploading the same PNGs to the same AP (multipart
  ``mac`` + file, 16 in flight) and counting "xfer complete" frames on the AP's websocket.

Every round draws new content (nothing is identical to what a tag shows). Printed: labels/s
of each, per round and as the median, and the ratio driver / baseline (goal >= 50 %): the
median of each round's own ratio (driver against the baseline run right after it, so a busy
moment of a shared machine hits both), and the ratio of the medians.

    python bench/oepl.py [--labels 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import io
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devices.esl.oepl import OeplAccessPoint
from devices.esl.oepl_state import OeplOptions
from devices.simulated.oepl_ap import FakeAccessPoint
from gateway.clock import ClockSyncSource, SystemClock
from gateway.drivers.contracts import (
    DriverContext,
    InstanceMemory,
    LabelContent,
    LabelModel,
    LabelPalette,
    LabelReport,
    LabelReportKind,
)

PANEL = LabelModel(296, 128, LabelPalette.BWR, has_led=True)
IN_FLIGHT = 16


def png(label: str, round_number: int) -> bytes:
    image = Image.new("P", (PANEL.width, PANEL.height), 0)
    image.putpalette([255, 255, 255, 0, 0, 0, 255, 0, 0])
    seed = hashlib.sha256(f"{label}/{round_number}".encode()).digest()
    for index, byte in enumerate(seed):
        for x in range(40):
            image.putpixel(((index * 9 + x) % PANEL.width, byte % PANEL.height), 1 + byte % 2)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


async def serve(labels: int) -> None:
    async with FakeAccessPoint(tag_count=labels, radio_s=0, checkin_s=3600, sys_s=1) as ap:
        print(ap.url, flush=True)
        await asyncio.Event().wait()


class RunningDriver:
    """One ``esl.oepl`` driver running across the rounds, as the daemon runs it: its
    ``readings()`` followed all along, each round's ``CONFIRMED`` reports counted."""

    def __init__(self, url: str) -> None:
        clock = SystemClock(sync=ClockSyncSource.ASSUME)
        context = DriverContext("bench", clock, InstanceMemory())
        self.driver = OeplAccessPoint(context, OeplOptions(url=url))
        self.pending: set[str] = set()
        self.done = asyncio.Event()
        self._follower: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.driver.open()
        self._follower = asyncio.create_task(self._follow())
        await asyncio.sleep(0.2)  # the websocket is followed

    async def _follow(self) -> None:
        async for reading in self.driver.readings():
            if isinstance(reading, LabelReport) and reading.kind is LabelReportKind.CONFIRMED:
                self.pending.discard(reading.label_id)
                if not self.pending:
                    self.done.set()

    async def stop(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
        await self.driver.close()


async def driver_round(running: RunningDriver, macs: list[str], images: list[bytes]) -> float:
    running.pending, running.done = set(macs), asyncio.Event()
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def push(mac: str, image: bytes) -> None:
        async with gate:
            digest = hashlib.sha256(image).hexdigest()
            await running.driver.push(LabelContent(mac, image, digest, PANEL))

    started = time.perf_counter()
    await asyncio.gather(*(push(mac, image) for mac, image in zip(macs, images, strict=True)))
    await running.done.wait()
    elapsed = time.perf_counter() - started
    await asyncio.sleep(0.2)  # the tags' records after their last deliveries arrive
    return len(macs) / elapsed


async def baseline_round(url: str, macs: list[str], images: list[bytes]) -> float:
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{url}/ws") as socket:
        pending = set(macs)
        done = asyncio.Event()

        async def follow() -> None:
            async for message in socket:
                text = message.data if isinstance(message.data, str) else ""
                if "reports xfer complete" in text:
                    pending.discard(text.split('"')[3].split()[0])
                    if not pending:
                        done.set()

        follower = asyncio.create_task(follow())
        gate = asyncio.Semaphore(IN_FLIGHT)

        async def upload(mac: str, image: bytes) -> None:
            async with gate:
                form = aiohttp.FormData()
                form.add_field("mac", mac)
                form.add_field("file", image, filename="l.png", content_type="image/png")
                async with session.post(f"{url}/imgupload", data=form) as answer:
                    assert answer.status == 200, await answer.text()

        started = time.perf_counter()
        await asyncio.gather(*(upload(m, i) for m, i in zip(macs, images, strict=True)))
        await done.wait()
        elapsed = time.perf_counter() - started
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
    return len(macs) / elapsed


async def measure(url: str, labels: int, rounds: int) -> None:
    macs = [f"0000A0{i:010X}" for i in range(labels)]
    driver_rates: list[float] = []
    baseline_rates: list[float] = []
    running = RunningDriver(url)
    await running.start()
    for round_number in range(rounds):
        images = [png(mac, 2 * round_number) for mac in macs]
        driver_rates.append(await driver_round(running, macs, images))
        images = [png(mac, 2 * round_number + 1) for mac in macs]
        baseline_rates.append(await baseline_round(url, macs, images))
        print(
            f"round {round_number + 1}: driver {driver_rates[-1]:7.1f} labels/s, "
            f"bare aiohttp {baseline_rates[-1]:7.1f} labels/s"
        )
    await running.stop()
    driver, baseline = statistics.median(driver_rates), statistics.median(baseline_rates)
    paired = statistics.median(d / b for d, b in zip(driver_rates, baseline_rates, strict=True))
    print(f"esl.oepl (render-ready PNG -> JPEG q100 -> /imgupload -> xfer complete): "
          f"{driver:.1f} labels/s confirmed")  # fmt: skip
    print(f"bare aiohttp client, same PNGs, same AP: {baseline:.1f} labels/s")
    print(f"ratio of the medians: {driver / baseline:.0%}")
    print(f"ratio, median of the rounds' own (driver / the baseline run next to it): "
          f"{paired:.0%} (goal >= 50 %)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.labels))
        return
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--labels", str(args.labels)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        url = child.stdout.readline().strip()
        asyncio.run(measure(url, args.labels, args.rounds))
    finally:
        child.terminate()
        child.wait(timeout=10)


if __name__ == "__main__":
    main()
