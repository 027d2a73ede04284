"""The ``[labels]`` section: the label pipeline's SLA, look-ahead, retries, panels and fonts."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, model_validator

from gateway.section import ConfigSection

__all__ = ["LabelsConfig"]


class LabelsConfig(ConfigSection):
    """The label pipeline: jobs, scheduled flips, SLA, reconciliation, audit."""

    sla_s: float = Field(
        900.0, gt=0, le=7 * 86400, description="A label must be confirmed this long after due."
    )
    lookahead_s: float = Field(
        900.0, ge=10, le=86400, description="Scheduled flips are pre-rendered this far ahead."
    )
    flip_tolerance_s: float = Field(
        120.0,
        ge=0,
        le=86400,
        description="A flip finishing later than this after its "
        "effective time is announced as late (label.flip_late) ahead of time.",
    )
    reconcile_interval_s: float = Field(
        300.0, ge=5, le=86400, description="Should-show vs last confirmed, every this often."
    )
    confirm_timeout_s: float = Field(
        600.0,
        ge=5,
        le=86400,
        description="A pushed job unconfirmed this long is retried (counted from the label's "
        "next check-in when its ESL system said it sleeps until then).",
    )
    retry_initial_s: float = Field(10.0, gt=0, le=3600, description="First retry backoff.")
    retry_max_s: float = Field(600.0, gt=0, le=86400, description="Backoff cap.")
    queue_ahead_s: float = Field(
        5.0, gt=0, le=600, description="Seconds of radio work kept queued per ESL driver."
    )
    audit_retention_days: float = Field(
        90.0, gt=0, le=3650, description="Forwarded audit rows older than this are pruned."
    )
    default_model: str = Field(
        "296x128:bwr",
        pattern=r"^\d{2,4}x\d{2,4}:(bw|bwr|bwy|bwry)$",
        description="Panel of labels whose driver reports no model (WIDTHxHEIGHT:PALETTE).",
    )
    font: Path = Field(
        Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"), description="Regular font."
    )
    bold_font: Path = Field(
        Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"), description="Bold font."
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.retry_max_s < self.retry_initial_s:
            raise ValueError("retry_max_s must be >= retry_initial_s")
        return self
