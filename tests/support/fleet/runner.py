"""The simulator's parent side: starts the worker processes, steers them, sums their reports.

Stores are dealt to the processes round-robin (each process gets its share of every store
size). Every figure is read from the reports as they come (:meth:`Fleet.pump`); waiting is
always for a condition, with a budget.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import Any

from tests.support.fleet.custody import LatencyHistogram
from tests.support.fleet.worker import WorkerPlan, run_worker

__all__ = ["Fleet", "FleetTimeoutError"]


class FleetTimeoutError(TimeoutError):
    pass


class Fleet:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        stores: list[tuple[str, float]],
        processes: int,
        hq_kid: str,
        hq_public_key: str,
        seed: int = 16,
        commit_interval_s: float = 0.2,
        ack_timeout_s: float = 30.0,
        start_spread_s: float = 2.0,
        first_events: int = 0,
        produce: bool = True,
    ) -> None:
        self.stores = stores
        processes = max(1, min(processes, len(stores)))
        self._plans = [
            WorkerPlan(
                index=index,
                host=host,
                port=port,
                stores=stores[index::processes],
                hq_kid=hq_kid,
                hq_public_key=hq_public_key,
                seed=seed * 1000 + index,
                commit_interval_s=commit_interval_s,
                ack_timeout_s=ack_timeout_s,
                start_spread_s=start_spread_s,
                first_events=first_events,
                produce=produce,
            )
            for index in range(processes)
        ]
        self._pipes: list[Connection] = []
        self._open: list[Connection] = []  # until each process's end of its pipe closes
        self._processes: list[multiprocessing.process.BaseProcess] = []
        self.reports: dict[int, dict[str, Any]] = {}
        self.latencies = LatencyHistogram()  # since the last reset_latencies()
        self._finals: dict[int, list[dict[str, Any]]] = {}
        self._stopped: set[int] = set()

    @property
    def processes(self) -> int:
        return len(self._plans)

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        for plan in self._plans:
            parent, child = context.Pipe()
            process = context.Process(
                target=run_worker, args=(plan, child), name=f"fleet-{plan.index}", daemon=True
            )
            process.start()
            child.close()
            self._pipes.append(parent)
            self._open.append(parent)
            self._processes.append(process)

    def send(self, *command: Any) -> None:
        for index, pipe in enumerate(self._pipes):
            if index not in self._stopped and pipe in self._open:
                pipe.send(command)

    def pump(self, timeout: float) -> None:
        """Take every message waiting (up to ``timeout`` for the first)."""
        wait_s = timeout
        while self._open:
            ready = wait(self._open, wait_s)
            wait_s = 0
            if not ready:
                return
            for pipe in ready:
                assert isinstance(pipe, Connection)
                try:
                    message = pipe.recv()
                except EOFError:
                    self._open.remove(pipe)
                    index = self._pipes.index(pipe)
                    if index not in self._stopped:
                        raise RuntimeError(f"fleet process {index} died") from None
                    continue
                self._take(message)

    def _take(self, message: tuple[Any, ...]) -> None:
        kind, index = message[0], message[1]
        if kind == "report":
            report = message[2]
            self.latencies.merge(report["latencies"])
            self.reports[index] = report
        elif kind == "final":
            self._finals[index] = message[2]
        elif kind == "stopped":
            self._stopped.add(index)

    def wait_for(self, condition: Callable[[Fleet], bool], timeout: float, what: str) -> float:
        """Pump reports until ``condition`` holds; returns the seconds it took."""
        started = time.monotonic()
        deadline = started + timeout
        while not (len(self.reports) == self.processes and condition(self)):
            left = deadline - time.monotonic()
            if left <= 0:
                raise FleetTimeoutError(f"{what}: not within {timeout:.0f} s ({self.total()})")
            self.pump(min(left, 0.5))
        return time.monotonic() - started

    def settle(self, seconds: float) -> None:
        """Let the fleet run for ``seconds``, taking its reports."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.pump(min(left, 0.5))

    def fresh_reports(self) -> None:
        """Wait for one report from every process sent after now."""
        now = time.monotonic()
        self.wait_for(
            lambda fleet: all(r["at"] >= now for r in fleet.reports.values()), 30, "reports"
        )

    def reset_latencies(self) -> None:
        self.latencies = LatencyHistogram()

    def total(self, key: str = "") -> Any:
        """A summed figure of the latest reports (all of them when ``key`` is empty)."""
        keys = (
            [key] if key else ["stores", "connected", "generated", "acked", "backlog", "envelopes"]
        )
        sums = {name: sum(r.get(name, 0) for r in self.reports.values()) for name in keys}
        return sums[key] if key else sums

    def flowing(self) -> list[float]:
        """When each store's first ack since the mark came (sorted)."""
        return sorted(at for r in self.reports.values() for at in r["flowing"])

    def reconnected(self) -> list[float]:
        """When each store connected again since the mark (sorted)."""
        return sorted(at for r in self.reports.values() for at in r["reconnected"])

    def versions(self, field: str, version: int) -> tuple[int, float]:
        """Stores at ``version`` of a price figure (``applied``, ``receipts_known``) and the
        latest time one got there."""
        count = sum(r[field].get(version, 0) for r in self.reports.values())
        last = max((r[f"{field}_last"].get(version, 0.0) for r in self.reports.values()), default=0)
        return count, last

    def cpu_seconds(self) -> float:
        return sum(r["cpu_s"] for r in self.reports.values())

    def final(self) -> list[dict[str, Any]]:
        """Every store's streams (epoch, head, acked), for the exactly-once check."""
        self._finals = {}
        self.send("final")
        deadline = time.monotonic() + 60
        while len(self._finals) < self.processes:
            if time.monotonic() > deadline:
                raise FleetTimeoutError("final summaries not received")
            self.pump(1.0)
        return [store for index in sorted(self._finals) for store in self._finals[index]]

    def stop(self) -> None:
        self.send("stop")
        deadline = time.monotonic() + 30
        while len(self._stopped) < len(self._pipes) and time.monotonic() < deadline:
            try:
                self.pump(0.5)
            except RuntimeError:
                break
        for process in self._processes:
            process.join(timeout=max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        for pipe in self._pipes:
            pipe.close()
