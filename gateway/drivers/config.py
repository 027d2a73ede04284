"""The ``[supervisor]`` section and the ``[[devices]]`` entries: how driver instances are
restarted and stopped, and which devices run which driver with what options.

:class:`ResolvedDevice` is a device entry once its plugin is loaded and its options validated
by the plugin's own model (:func:`gateway.config.resolve_devices` does that through the
registry); the supervisor runs those.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

from pydantic import BaseModel, Field, model_validator

from gateway.drivers.contracts import DriverPlugin
from gateway.section import ConfigSection

__all__ = ["DEVICE_NAME_PATTERN", "DeviceConfig", "ResolvedDevice", "SupervisorConfig"]

#: A device instance's name (``[[devices]] name``, the ``driver[<name>]`` task).
DEVICE_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"


class SupervisorConfig(ConfigSection):
    backoff_initial_s: float = Field(1.0, gt=0, le=600)
    backoff_max_s: float = Field(60.0, gt=0, le=3600)
    start_timeout_s: float = Field(30.0, gt=0, le=600)
    stop_timeout_s: float = Field(5.0, gt=0, le=60)
    healthy_after_s: float = Field(
        60.0, gt=0, description="Running this long without failure resets the backoff."
    )
    shutdown_budget_s: float = Field(
        20.0, gt=0, le=300, description="Whole graceful stop; keep below TimeoutStopSec."
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be >= backoff_initial_s")
        return self


class DeviceConfig(ConfigSection):
    name: str = Field(pattern=DEVICE_NAME_PATTERN)
    driver: str = Field(min_length=1)
    enabled: bool = True
    silence_limit_s: float | None = Field(None, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ResolvedDevice:
    """A configured device with its plugin loaded and its options validated by that plugin."""

    config: DeviceConfig
    plugin: DriverPlugin
    options: BaseModel

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def silence_limit(self) -> float:
        return self.config.silence_limit_s or self.plugin.default_silence_limit
