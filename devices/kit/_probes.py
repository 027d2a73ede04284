"""The conformance suite's instruments: cancelling a coroutine at its n-th await, and seeing
what tasks and threads outlive a driver."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

__all__ = ["CancelAt", "LeakWatch", "spread"]

_T = TypeVar("_T")


def spread(points: int, most: int) -> list[int]:
    """Await numbers to cancel at: every one, or ``most`` spread evenly (first and last in)."""
    if points <= most:
        return list(range(1, points + 1))
    step = (points - 1) / (most - 1)
    return sorted({1 + round(i * step) for i in range(most)})


class CancelAt:
    """Runs a coroutine inside the current task and cancels that task at the coroutine's
    ``at``-th suspension (1-based): exactly what ``Task.cancel()`` does to a task waiting
    there. ``at=None`` only counts the suspensions."""

    def __init__(self, coroutine: Coroutine[Any, Any, _T], at: int | None) -> None:
        self._coroutine = coroutine
        self._at = at
        self.suspensions = 0
        self.cancelled_at: int | None = None

    async def run(self) -> Any:
        return await self

    def __await__(self) -> Generator[Any, Any, Any]:
        inner = self._coroutine.__await__()
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            try:
                yielded = inner.send(sent) if thrown is None else inner.throw(thrown)
            except StopIteration as stop:
                return stop.value
            self.suspensions += 1
            if self.suspensions == self._at:
                task = asyncio.current_task()
                assert task is not None
                task.cancel()  # lands on the future yielded below, as for a waiting task
                self.cancelled_at = self.suspensions
            try:
                sent, thrown = (yield yielded), None
            except BaseException as exc:  # noqa: BLE001 - what the task throws in goes on
                sent, thrown = None, exc


class LeakWatch:
    """Tasks and (non-daemon) threads that appeared since it was made and still run."""

    def __init__(self) -> None:
        self._tasks = asyncio.all_tasks()
        self._threads = set(threading.enumerate())

    async def leaks(self, *, settle_s: float = 2.0) -> str | None:
        """What still runs after ``settle_s`` at most (None: nothing)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settle_s
        while True:  # a task being cancelled or a worker thread may need a moment to finish
            tasks, threads = self._left()
            if not (tasks or threads) or loop.time() > deadline:
                break
            await asyncio.sleep(0.01)
        if not (tasks or threads):
            return None
        return (
            f"still running tasks {sorted(t.get_name() for t in tasks)}, "
            f"threads {sorted(t.name for t in threads)}"
        )

    def _left(self) -> tuple[list[asyncio.Task[Any]], list[threading.Thread]]:
        current = asyncio.current_task()
        tasks = [
            task
            for task in asyncio.all_tasks() - self._tasks
            if task is not current and not task.done()
        ]
        threads = [
            thread
            for thread in set(threading.enumerate()) - self._threads
            if thread.is_alive() and not thread.daemon
        ]
        return tasks, threads
