"""A 400-tag price flip across 4 OpenEPaperLink access points, radio timing on, tags asleep.

Four fake APs (devices/simulated/oepl_ap.py, in a child process) with 100 tags each serve one
delivery at a time, ``radio_s`` per tag (3.9 s on a real 296x128 tag), and their tags sleep
up to the AP's ``maxsleep`` (10 min) between check-ins, getting what is queued for them only
when they wake — all compressed by ``--speed``. Four ``esl.oepl`` drivers in this process push
the flip's 400 labels at its instant. Per AP the plan is the labels it must serve divided by
the driver's ``labels_per_minute`` (nominal 3.9 s per tag, or as measured in the flip before)
— at least the AP's check-in interval when it was not shortened, as the core plans it then;
measured is the time until every label of that AP confirmed (its own "xfer complete").

Three flips: (1) ``maxsleep`` left at 10 min; (2) lowered to 1 min one check-in interval
(+1 min) ahead through the driver's ``prepare_flip``, as the label scheduler does, and put
back after; (3) the same, planned from the rates measured in (2). The core's flip check
(gateway/labels/scheduler.py) raises ``labels.flip_late`` when the planned duration exceeds the
tolerance: printed is, per tolerance, whether that alert would fire before the flip and
whether the flip really was late.

    python bench/oepl_flip.py [--speed 50] [--tolerance-s 300 450]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.oepl import PANEL, png
from devices.esl.oepl import OeplAccessPoint
from devices.esl.oepl_state import OeplOptions
from devices.simulated.oepl_ap import FakeAccessPoint, FakeTag
from gateway.clock import ClockSyncSource, SystemClock
from gateway.drivers.contracts import (
    DriverContext,
    InstanceMemory,
    LabelContent,
    LabelReport,
    LabelReportKind,
)

APS, TAGS_PER_AP, RADIO_S = 4, 100, 3.9


def macs(ap: int) -> list[str]:
    return [f"0000B{ap}{n:010X}" for n in range(TAGS_PER_AP)]


async def serve(speed: float) -> None:
    async with contextlib.AsyncExitStack() as stack:
        for ap in range(APS):
            tags = [FakeTag(mac) for mac in macs(ap)]
            fake = FakeAccessPoint(
                tags, radio_s=RADIO_S / speed, checkin_s=3600, sys_s=1, minute_s=60 / speed
            )
            await stack.enter_async_context(fake)
            print(fake.url, flush=True)
        await asyncio.Event().wait()


async def flip(
    urls: list[str], memories: list[InstanceMemory], round_number: int, speed: float, *, lower: bool
) -> list[tuple[float, float]]:
    """(planned, measured) seconds per AP, in real (uncompressed) seconds."""
    clock = SystemClock(sync=ClockSyncSource.ASSUME)
    drivers = [
        OeplAccessPoint(
            DriverContext(f"ap-{ap}", clock, memories[ap]),
            OeplOptions(url=url, seconds_per_label=RADIO_S / speed),
        )
        for ap, url in enumerate(urls)
    ]
    for driver in drivers:
        await driver.open()
    planned = [TAGS_PER_AP / driver.labels_per_minute * 60 for driver in drivers]
    if not lower:  # as the core plans a flip whose check-ins could not be shortened
        planned = [
            max(p, d.checkin_interval_s / speed) for p, d in zip(planned, drivers, strict=True)
        ]
    finished: list[float] = [0.0] * APS
    started = time.perf_counter()

    async def follow(ap: int) -> None:
        pending = set(macs(ap))
        async for reading in drivers[ap].readings():
            if isinstance(reading, LabelReport) and reading.kind is LabelReportKind.CONFIRMED:
                pending.discard(reading.label_id)
                if not pending:
                    finished[ap] = time.perf_counter() - started
                    return

    images = [[png(mac, round_number) for mac in macs(ap)] for ap in range(APS)]
    followers = [asyncio.create_task(follow(ap)) for ap in range(APS)]
    await asyncio.sleep(0.2)
    if lower:  # a check-in interval (+1 min) ahead of the flip, as the scheduler does
        lead_s = drivers[0].checkin_interval_s + 60
        instant = datetime.now(UTC) + timedelta(seconds=lead_s / speed)
        for driver, plan in zip(drivers, planned, strict=True):
            await driver.prepare_flip(instant, instant + timedelta(seconds=plan / speed))
        await asyncio.sleep(lead_s / speed)
    started = time.perf_counter()

    async def push_all(ap: int) -> None:  # the APs are served side by side
        for mac, image in zip(macs(ap), images[ap], strict=True):
            digest = hashlib.sha256(image).hexdigest()
            await drivers[ap].push(LabelContent(mac, image, digest, PANEL))

    await asyncio.gather(*(push_all(ap) for ap in range(APS)))
    await asyncio.gather(*followers)
    for driver in drivers:
        await driver.restore_checkins()
        await driver.close()
    return [(p * speed, m * speed) for p, m in zip(planned, finished, strict=True)]


async def measure(urls: list[str], speed: float, tolerances: list[float]) -> None:
    memories = [InstanceMemory() for _ in urls]
    flips = (
        (1, "maxsleep kept at 10 min, nominal 3.9 s/tag", False, False),
        (2, "maxsleep lowered to 1 min ahead, nominal 3.9 s/tag", True, False),
        (3, "maxsleep lowered to 1 min ahead, rates measured in flip 2", True, True),
    )
    for round_number, basis, lower, keep in flips:
        if not keep:
            memories = [InstanceMemory() for _ in urls]
        results = await flip(urls, memories, round_number, speed, lower=lower)
        planned = max(p for p, _ in results)
        measured = max(m for _, m in results)
        print(f"flip {round_number} ({basis}), {APS * TAGS_PER_AP} tags on {APS} APs:")
        for ap, (p, m) in enumerate(results):
            print(f"  ap-{ap}: planned {p:6.0f} s, measured {m:6.0f} s ({m / p:.0%} of plan)")
        print(f"  flip planned {planned:.0f} s, took {measured:.0f} s")
        for tolerance_s in tolerances:
            alert, late = planned > tolerance_s, measured > tolerance_s
            print(
                f"    tolerance {tolerance_s:.0f} s: alert before the flip "
                f"{'FIRES' if alert else 'silent'}, flip {'late' if late else 'on time'} -> "
                f"{'correct' if alert == late else 'WRONG'}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", type=float, default=50.0, help="time compression")
    parser.add_argument("--tolerance-s", type=float, nargs="+", default=[300.0, 450.0])
    parser.add_argument("--serve", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        asyncio.run(serve(args.serve))
        return
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(args.speed)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        urls = [child.stdout.readline().strip() for _ in range(APS)]
        asyncio.run(measure(urls, args.speed, args.tolerance_s))
    finally:
        child.terminate()
        child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()


if __name__ == "__main__":
    main()
