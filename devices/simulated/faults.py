"""Fault injection shared by the simulated drivers.

``fail_open_times`` counts ``open()`` calls per instance name for the life of the process (the
supervisor builds a fresh driver object on every restart, so the count must live outside it).
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, ConfigDict, Field

from gateway.errors import DriverConfigError, DriverUnavailableError

__all__ = ["FaultOptions", "FaultState"]

_OPEN_ATTEMPTS: dict[str, int] = {}


class FaultOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fail_open_times: int = Field(0, ge=0, description="open() fails transiently this many times.")
    config_error_on_open: bool = Field(False, description="open() raises DriverConfigError.")
    hang_on_open: bool = Field(False, description="open() never returns.")
    crash_after_s: float | None = Field(
        None, gt=0, description="readings() raises RuntimeError after this long."
    )
    hang_after_s: float | None = Field(
        None, gt=0, description="readings() goes silent (never yields again) after this long."
    )


class FaultState:
    """Applies :class:`FaultOptions` for one driver object."""

    def __init__(self, name: str, options: FaultOptions, monotonic: float) -> None:
        self.name = name
        self.options = options
        self.started = monotonic

    async def on_open(self) -> None:
        attempts = _OPEN_ATTEMPTS.get(self.name, 0) + 1
        _OPEN_ATTEMPTS[self.name] = attempts
        if self.options.config_error_on_open:
            raise DriverConfigError("simulated configuration error", driver=self.name)
        if attempts <= self.options.fail_open_times:
            raise DriverUnavailableError(
                f"simulated open failure {attempts}/{self.options.fail_open_times}",
                driver=self.name,
            )
        if self.options.hang_on_open:
            await asyncio.Event().wait()

    async def on_tick(self, monotonic: float) -> None:
        elapsed = monotonic - self.started
        if self.options.crash_after_s is not None and elapsed >= self.options.crash_after_s:
            raise RuntimeError("simulated crash")
        if self.options.hang_after_s is not None and elapsed >= self.options.hang_after_s:
            await asyncio.Event().wait()


def reset_open_attempts() -> None:
    """Forget fail_open_times counts (tests)."""
    _OPEN_ATTEMPTS.clear()
