"""The ``[storage]`` section (the SQLite database) and the ``[outbox]`` section (the buffer's
byte budget and per-stream TTLs), turned into the :class:`~gateway.store.budget.BufferBudget`
here."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Self

from pydantic import Field, field_validator, model_validator

from gateway.section import ConfigSection
from gateway.store.budget import BufferBudget
from gateway.store.outbox import STREAM_NAME_PATTERN

__all__ = ["OutboxConfig", "StorageConfig"]


class StorageConfig(ConfigSection):
    path: Path = Path("/var/lib/storegw/gateway.db")
    commit_interval_s: float = Field(0.05, gt=0, le=5, description="Group-commit window.")
    commit_max_rows: int = Field(500, ge=1, le=100_000)
    busy_timeout_s: float = Field(5.0, gt=0, le=120)
    maintenance_interval_s: float = Field(
        300.0, ge=1, le=86400, description="Incremental vacuum + WAL checkpoint period."
    )


class OutboxConfig(ConfigSection):
    budget_bytes: int = Field(
        256 * 1024 * 1024,
        ge=1024 * 1024,
        description="Byte budget of the buffered events (about 1M stock events by default).",
    )
    alert_reserve_bytes: int = Field(
        4 * 1024 * 1024, ge=0, description="Top of the budget only alerts may use."
    )
    shed_detail_at: float = Field(
        0.7, gt=0, le=1, description="Fraction of the budget at which dwell detail is dropped."
    )
    shed_aggregate_at: float = Field(
        0.9, gt=0, le=1, description="Fraction at which dwell aggregates are dropped too."
    )
    ttl_s: dict[str, float] = Field(
        default_factory=lambda: {"dwell": 7 * 86400.0},
        description="Per stream: seconds an event may wait for HQ before it expires.",
    )
    expiry_interval_s: float = Field(60.0, ge=1, le=86400)

    @field_validator("ttl_s")
    @classmethod
    def _ttl_shape(cls, value: dict[str, float]) -> dict[str, float]:
        for stream, seconds in value.items():
            if re.fullmatch(STREAM_NAME_PATTERN, stream) is None:
                raise ValueError(f"{stream!r} is not a stream name")
            if not seconds > 0:
                raise ValueError(f"ttl_s.{stream} must be > 0 seconds")
        return value

    @model_validator(mode="after")
    def _budget_consistent(self) -> Self:
        try:
            self.budget()
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        return self

    def budget(self) -> BufferBudget:
        return BufferBudget(
            budget_bytes=self.budget_bytes,
            alert_reserve_bytes=self.alert_reserve_bytes,
            shed_detail_at=self.shed_detail_at,
            shed_aggregate_at=self.shed_aggregate_at,
        )
