"""What every simulated driver shares: its options' ``seed`` and ``faults``, the lifecycle.

A simulated driver (``devices/simulated/``, or a third party's stand-in for its hardware)
subclasses :class:`SimulatedDriver` and its options subclass :class:`SimulatedOptions`::

    class ShelfOptions(SimulatedOptions):
        sample_rate_hz: float = Field(5.0, gt=0, le=200, description="Samples per second.")

    class SimulatedShelf(SimulatedDriver[ShelfOptions]):
        async def readings(self) -> AsyncIterator[Reading]:
            self.faults.start()
            while True:
                await self.faults.sleep_until(...)  # crashes or hangs when a fault is due
                yield ...

It gets the context and options (``self._context``, ``self._options``), random streams
deterministic for the seed *and* the instance name (two instances differ), fault injection
that keeps its open-attempt count in the instance's memory, and an ``open()``/``close()`` that
apply the faults and hold nothing. A driver with real resources overrides them (and calls
``super().open()`` first).
"""

from __future__ import annotations

import random
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from devices.kit.faults import FaultOptions, FaultState
from gateway.drivers.contracts import DriverContext

__all__ = ["SimulatedDriver", "SimulatedOptions"]


class SimulatedOptions(BaseModel):
    """The options every simulated driver takes; its own options subclass this."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(0, ge=0, le=2**63, description="Scenario seed (mixed with the name).")
    faults: FaultOptions = Field(default_factory=FaultOptions, description="Fault injection.")


_Options = TypeVar("_Options", bound=SimulatedOptions)


class SimulatedDriver(Generic[_Options]):
    """The lifecycle of a simulated driver; subclasses add ``readings()`` and commands."""

    def __init__(self, context: DriverContext, options: _Options) -> None:
        self._context = context
        self._options = options
        self.faults = FaultState(context, options.faults)

    def _random(self, stream: str | None = None) -> random.Random:
        """A random stream for ``stream`` (e.g. ``"radio"``), deterministic for the seed and
        the instance name; separate streams keep one behaviour from shifting another's."""
        seed = f"{self._options.seed}:{self._context.name}"
        return random.Random(seed if stream is None else f"{seed}:{stream}")  # noqa: S311

    async def open(self) -> None:
        await self.faults.on_open()

    async def close(self) -> None:
        return None
