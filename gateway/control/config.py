"""The ``[control]`` section: the control socket's path and how many connections it serves."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, field_validator

from gateway.control.server import DEFAULT_MAX_CONNECTIONS, SUN_PATH_MAX
from gateway.section import ConfigSection

__all__ = ["ControlConfig"]


class ControlConfig(ConfigSection):
    socket: Path = Path("/run/storegw/control.sock")
    max_connections: int = Field(
        DEFAULT_MAX_CONNECTIONS,
        ge=1,
        le=1000,
        description="Control connections served at once; more are answered busy.",
    )

    @field_validator("socket")
    @classmethod
    def _fits_a_unix_socket(cls, value: Path) -> Path:
        length = len(os.fsencode(value))
        if length > SUN_PATH_MAX:
            raise ValueError(
                f"{value} is {length} bytes long; a unix socket path holds at most "
                f"{SUN_PATH_MAX}: choose a shorter path"
            )
        return value
