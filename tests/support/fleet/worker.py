"""One simulator process: an asyncio loop running many virtual stores, steered over a pipe.

The parent (:class:`tests.support.fleet.runner.Fleet`) sends commands — ``rate`` (a factor
on every store's rate), ``produce`` (on or off), ``mark`` (the broker restarted: note each
store's first ack after it), ``final`` (each store's streams, for the exactly-once check),
``stop`` — and gets a report every ``report_interval_s``: stores connected, events accepted
and acknowledged, the new ack latencies (a histogram's counts), price versions applied, the
stores flowing again since the mark, the process's CPU time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import resource
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from gateway.clock import ClockSyncSource, SystemClock
from gateway.sync.config import MqttConfig
from gateway.sync.signing import Verifier, decode_public_key
from tests.support.fleet.custody import LatencyHistogram
from tests.support.fleet.store import StoreSettings, VirtualStore

__all__ = ["WorkerPlan", "run_worker"]


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    index: int
    host: str
    port: int
    stores: list[tuple[str, float]]  # (store id, events/s)
    hq_kid: str
    hq_public_key: str  # base64, as a store's [downlink] hq_public_keys has it
    seed: int
    commit_interval_s: float = 1.0
    ack_timeout_s: float = 30.0
    start_spread_s: float = 2.0  # stores start over this long (0: all at once)
    first_events: int = 0  # stock events each store accepts at start
    produce: bool = True
    report_interval_s: float = 0.5


def run_worker(plan: WorkerPlan, pipe: Connection) -> None:
    """The process's entry point (multiprocessing, spawn)."""
    _raise_file_limit()
    logging.basicConfig(level=logging.ERROR)  # the links log each reconnect: too many here
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_Worker(plan, pipe).run())
    pipe.close()


def _raise_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class _Worker:
    def __init__(self, plan: WorkerPlan, pipe: Connection) -> None:
        self._plan = plan
        self._pipe = pipe
        self._latencies = LatencyHistogram()
        self._reported = [0] * len(self._latencies.counts)
        clock = SystemClock(sync=ClockSyncSource.ASSUME)
        verifier = Verifier({plan.hq_kid: decode_public_key(plan.hq_public_key)})
        self._settings = StoreSettings(
            mqtt=MqttConfig(
                host=plan.host, port=plan.port, tls=False, allow_plaintext=True, keepalive_s=60
            ),
            clock=clock,
            verifier=verifier,
            latencies=self._latencies,
            commit_interval_s=plan.commit_interval_s,
            ack_timeout_s=plan.ack_timeout_s,
        )
        rng = random.Random(plan.seed)
        self._stores = [
            VirtualStore(store_id, rate, self._settings, random.Random(rng.random()))
            for store_id, rate in plan.stores
        ]
        self._stop = asyncio.Event()
        self._commands: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self._pipe.fileno(), self._read_pipe)
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(self._run_stores(), name="fleet.stores"),
                    group.create_task(self._report(), name="fleet.report"),
                ]
                await self._obey()
                for task in tasks:
                    task.cancel()
        finally:
            loop.remove_reader(self._pipe.fileno())
        self._pipe.send(("stopped", self._plan.index))

    def _read_pipe(self) -> None:
        try:
            while self._pipe.poll():
                self._commands.put_nowait(self._pipe.recv())
        except (EOFError, OSError):  # the parent went: stop
            self._commands.put_nowait(("stop",))

    async def _run_stores(self) -> None:
        plan = self._plan
        async with asyncio.TaskGroup() as group:
            for index, store in enumerate(self._stores):
                group.create_task(
                    store.run(produce=plan.produce, first_events=plan.first_events),
                    name=f"fleet.store[{store.store_id}]",
                )
                if plan.start_spread_s and len(self._stores) > 1:
                    await asyncio.sleep(plan.start_spread_s / len(self._stores))
                elif index % 100 == 99:
                    await asyncio.sleep(0)

    async def _obey(self) -> None:
        while True:
            command = await self._commands.get()
            match command:
                case ("rate", factor):
                    self._settings.rate_factor = float(factor)
                case ("produce", on):
                    self._settings.producing = bool(on)
                case ("hold", on):
                    self._settings.holding = bool(on)
                    for store in self._stores:  # released: as after a reconnect
                        store.wake(rewind=not on)
                case ("ack_timeout", seconds):
                    for store in self._stores:
                        store.set_ack_timeout(float(seconds))
                case ("mark",):
                    for store in self._stores:
                        store.mark_at = time.monotonic()
                        store.reconnected_at = store.flowing_at = None
                case ("final",):
                    self._pipe.send(("final", self._plan.index, self._final()))
                case ("stop",):
                    return
                case _:
                    raise ValueError(f"unknown command {command!r}")

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(self._plan.report_interval_s)
            self._pipe.send(("report", self._plan.index, self._figures()))

    def _figures(self) -> dict[str, Any]:
        counts = self._latencies.counts
        new = [now - before for now, before in zip(counts, self._reported, strict=True)]
        self._reported = list(counts)
        applied: Counter[int] = Counter()
        applied_last: dict[int, float] = {}
        known: Counter[int] = Counter()
        known_last: dict[int, float] = {}
        for store in self._stores:
            for version, at in store.applied_at.items():
                applied[version] += 1
                applied_last[version] = max(applied_last.get(version, 0.0), at)
            for version, at in store.receipt_acked_at.items():
                known[version] += 1
                known_last[version] = max(known_last.get(version, 0.0), at)
        return {
            "at": time.monotonic(),
            "stores": len(self._stores),
            "connected": sum(store.link.connected.is_set() for store in self._stores),
            "generated": sum(store.generated for store in self._stores),
            "acked": sum(store.acked for store in self._stores),
            "backlog": sum(store.backlog for store in self._stores),
            "envelopes": sum(store.envelopes for store in self._stores),
            "resent_windows": sum(store.resent_windows for store in self._stores),
            "refused": sum(store.refused_publishes for store in self._stores),
            "price_refused": sum(store.prices.refused for store in self._stores),
            "latencies": new,
            "flowing": [s.flowing_at for s in self._stores if s.flowing_at is not None],
            "reconnected": [s.reconnected_at for s in self._stores if s.reconnected_at is not None],
            "applied": dict(applied),
            "applied_last": applied_last,
            "receipts_known": dict(known),
            "receipts_known_last": known_last,
            "cpu_s": time.process_time(),
        }

    def _final(self) -> list[dict[str, object]]:
        return [store.summary() for store in self._stores]
