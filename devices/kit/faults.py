"""Fault injection for simulated drivers: the failures the supervisor must survive.

Every simulated plugin accepts a ``faults`` table (:class:`FaultOptions`, default: no faults;
:class:`~devices.kit.simulated.SimulatedOptions` declares it).
Timers count real seconds of the event loop from the start of ``readings()``, the same time
the supervisor's silence watchdog measures, so they work whatever clock is injected.

``fail_open_times`` must survive restarts, and the supervisor builds a fresh driver object for
every restart, so the count lives in an :class:`OpenAttempts` kept in the instance's
:class:`~gateway.drivers.contracts.InstanceMemory` (``context.memory``).
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, ConfigDict, Field

from gateway.drivers.contracts import DriverContext
from gateway.errors import DriverConfigError, DriverUnavailableError

__all__ = ["FaultOptions", "FaultState", "OpenAttempts"]


class FaultOptions(BaseModel):
    """The ``faults`` table of every simulated driver."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fail_open_times: int = Field(
        0, ge=0, le=1_000_000, description="open() raises DriverUnavailableError this many times."
    )
    config_error_on_open: bool = Field(False, description="open() raises DriverConfigError.")
    hang_on_open: bool = Field(False, description="open() never returns.")
    crash_after_s: float | None = Field(
        None, gt=0, le=86_400, description="readings() raises RuntimeError after this long."
    )
    hang_after_s: float | None = Field(
        None, gt=0, le=86_400, description="readings() goes silent (never yields again) after."
    )


class OpenAttempts:
    """How many times ``open()`` was called for one driver instance, across restarts."""

    def __init__(self) -> None:
        self.count = 0

    def record(self) -> int:
        """Count one more attempt; return its number (1 for the first)."""
        self.count += 1
        return self.count


class FaultState:
    """Applies :class:`FaultOptions` for one driver object."""

    def __init__(self, context: DriverContext, options: FaultOptions) -> None:
        self._name = context.name
        self._options = options
        self._attempts = context.memory.keep(OpenAttempts)
        self._started: float | None = None
        self._quiet = False

    async def on_open(self) -> None:
        attempt = self._attempts.record()
        options = self._options
        if options.config_error_on_open:
            raise DriverConfigError("simulated configuration error", driver=self._name)
        if attempt <= options.fail_open_times:
            raise DriverUnavailableError(
                f"simulated open failure {attempt}/{options.fail_open_times}", driver=self._name
            )
        if options.hang_on_open:
            await asyncio.Event().wait()

    def start(self) -> None:
        """Mark the start of ``readings()``: the fault timers count from here."""
        self._started = asyncio.get_running_loop().time()

    def go_quiet(self) -> None:
        """The simulated device falls silent from now on, as with ``hang_after_s`` (the
        conformance suite's silence check calls it on a running driver)."""
        self._quiet = True

    def seconds_left(self) -> float:
        """Real seconds until a crash or hang is due (inf if none): drivers cap waits by it."""
        if self._quiet:
            return 0.0
        due = [t for t in (self._options.crash_after_s, self._options.hang_after_s) if t]
        if self._started is None or not due:
            return float("inf")
        return max(0.0, self._started + min(due) - asyncio.get_running_loop().time())

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until the event loop's time reaches ``deadline``, crashing or hanging on the
        way if a fault falls due first."""
        loop = asyncio.get_running_loop()
        while (delay := deadline - loop.time()) > 0:
            await asyncio.sleep(min(delay, self.seconds_left()))
            await self.check()
        await self.check()

    async def check(self) -> None:
        """Crash or hang once their time has come; call before every yield."""
        if self._quiet:
            await asyncio.Event().wait()
        options = self._options
        if self._started is None or (
            options.crash_after_s is None and options.hang_after_s is None
        ):
            return
        elapsed = asyncio.get_running_loop().time() - self._started
        if options.crash_after_s is not None and elapsed >= options.crash_after_s:
            raise RuntimeError("simulated crash")
        if options.hang_after_s is not None and elapsed >= options.hang_after_s:
            await asyncio.Event().wait()  # silent until cancelled: the watchdog's job
