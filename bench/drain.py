"""Backlog drain after an outage: N buffered events reach HQ once the link is back.

A first process fills the outbox with N stock events (the outage). A second process — the
gateway coming back — connects with the catch-up rate limit lifted and drains the backlog
through a local mosquitto to the reference HQ consumer (`storegw hq tail`, its own process);
it is done when HQ has acknowledged custody of every event and the rows are deleted. Figures:
drain time, events/s, the draining process's peak RSS, and the same-run ceiling: a bare paho
client publishing the same envelopes to its last PUBACK.
Goal (issue 3): 1 000 000 events in <= 30 s with RSS <= 120 MB.

    python bench/drain.py            # BENCH_EVENTS=1000000 by default
"""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.uplink import (
    bench_uplink,
    free_port,
    measure_ceilings,
    ratios,
    start_broker,
    start_hq,
    stock_changes,
)
from gateway.clock import SystemClock
from gateway.store import Database
from gateway.store.budget import BufferBudget
from gateway.store.outbox import Outbox

EVENTS = int(os.environ.get("BENCH_EVENTS", "1000000"))
FILL_CHUNK = 20_000
BIG_BUDGET = BufferBudget(budget_bytes=4 * 1024**3)  # the backlog must not be shed here


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not ru_maxrss: Linux carries the parent's peak over
    fork+exec into it, and the parent holds the pre-encoded ceiling envelopes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def fill(path: Path, count: int) -> None:
    clock = SystemClock()
    async with Database.running(path, clock=clock, commit_max_rows=FILL_CHUNK) as db:
        outbox = Outbox(db, clock, BIG_BUDGET)
        await outbox.open(("stock",))
        for first in range(0, count, FILL_CHUNK):
            size = min(FILL_CHUNK, count - first)
            await outbox.append_many("stock", stock_changes(first, size))


async def drain(path: Path, port: int) -> tuple[float, int]:
    clock = SystemClock()
    async with Database.running(path, clock=clock) as db:
        outbox = Outbox(db, clock, BIG_BUDGET)
        await outbox.open(("stock",))
        backlog = sum(s.depth for s in await outbox.states())
        link, uplink = bench_uplink(outbox, db, clock, port)  # the rate limit lifted
        started = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(link.run()), group.create_task(uplink.run())]
            while sum(s.depth for s in await outbox.states()):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - started
            for task in tasks:
                task.cancel()
    return elapsed, backlog


def main() -> None:
    if sys.argv[1:2] == ["--fill"]:
        asyncio.run(fill(Path(sys.argv[2]), int(sys.argv[3])))
        return
    if sys.argv[1:2] == ["--drain"]:
        elapsed, backlog = asyncio.run(drain(Path(sys.argv[2]), int(sys.argv[3])))
        print(f"{elapsed} {backlog} {peak_rss_mb()}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        db_path = directory / "backlog.db"
        started = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--fill", str(db_path), str(EVENTS)], check=True)
        print(
            f"outage: {EVENTS:,} events buffered in {time.perf_counter() - started:.1f} s "
            f"({db_path.stat().st_size / 1e6:.0f} MB database)"
        )
        port = free_port()
        broker = start_broker(directory, port)
        try:
            ceilings = measure_ceilings(port, EVENTS)
            hq = start_hq(port, directory)
            try:
                result = subprocess.run(
                    [sys.executable, __file__, "--drain", str(db_path), str(port)],
                    check=True,
                    capture_output=True,
                    text=True,
                )
            finally:
                hq.terminate()
                hq.wait()
        finally:
            broker.terminate()
            broker.wait()
        elapsed, backlog, peak_mb = result.stdout.split()[-3:]
        seconds = float(elapsed)
        print(
            f"storegw drain, reconnect → every event HQ-acked and deleted: {int(backlog):,} "
            f"events in {seconds:.2f} s = {int(backlog) / seconds:,.0f} events/s "
            f"({ratios(int(backlog) / seconds, ceilings)}); peak RSS {float(peak_mb):.0f} MB "
            f"(goal <= 30 s, <= 120 MB)"
        )


if __name__ == "__main__":
    main()
