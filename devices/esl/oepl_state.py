"""What the ``esl.oepl`` driver keeps per access point, and its options.

:class:`ApMemory` lives in the instance's ``context.memory`` (it outlives the driver objects):
the AP's tag records, each tag's panel, the jobs the AP holds for us *in its order* (so a tag's
"xfer complete" is matched to the job it ends: an image of ours, or an LED command), what each
tag shows by our own content hash, the latest content asked for per label, the AP's uptime
(falling: it rebooted), and the ``maxsleep`` to put back after a flip's window (a driver
restarted within the window still puts back the AP's own value, not the lowered one; across
process restarts the core keeps it, as the restore token).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, field_validator

from devices.esl.protocol import TagRecord
from gateway.drivers.contracts import LabelContent, LabelModel, LabelPalette

__all__ = ["ApJob", "ApMemory", "OeplOptions", "Shown", "panel_of_tag_type"]


class OeplOptions(BaseModel):
    """Options of ``esl.oepl``: one OpenEPaperLink access point."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="The access point's address, e.g. http://192.168.1.50.")
    request_timeout_s: float = Field(10.0, gt=0, le=120, description="Per HTTP request.")
    busy_retries: int = Field(
        6, ge=0, le=50, description="Retries of an upload the AP answers 409 (come back later)."
    )
    busy_backoff_s: float = Field(
        0.5, gt=0, le=60, description="First pause after a 409; doubles per retry."
    )
    seconds_per_label: float = Field(
        3.9, gt=0, le=600, description="Radio time per delivery until measured (296x128: 3.9)."
    )
    flip_maxsleep_min: int = Field(
        1,
        ge=1,
        le=254,
        description="The AP's maxsleep (minutes an idle tag sleeps) during a scheduled flip's "
        "window; the AP's own value is put back after it.",
    )

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")) or len(value) < 9:
            raise ValueError("url must be http://host[:port] of the access point")
        return value


@dataclass(frozen=True, slots=True)
class ApJob:
    """Something the AP holds for a tag: our image (``content_hash``) or an LED command."""

    kind: str  # "image" | "led"
    content_hash: str = ""
    number: int = 0


@dataclass(slots=True)
class Shown:
    """What a tag shows by our content hash, and the AP's hash for it (None: not yet read)."""

    content_hash: str
    ap_hash: str | None


@dataclass(slots=True)
class ApMemory:
    records: dict[str, TagRecord] = field(default_factory=dict)
    panels: dict[int, LabelModel] = field(default_factory=dict)  # hwType → panel
    jobs: dict[str, deque[ApJob]] = field(default_factory=dict)  # per tag, the AP's order
    shown: dict[str, Shown] = field(default_factory=dict)
    rehash: set[str] = field(default_factory=set)  # completed: the next record's hash is theirs
    latest: dict[str, LabelContent] = field(default_factory=dict)
    waiting: dict[str, LabelContent] = field(default_factory=dict)  # behind a queued image
    uptime_s: int | None = None
    job_numbers: int = 0
    delivery_times: deque[float] = field(default_factory=lambda: deque(maxlen=32))
    maxsleep_min: int | None = None  # as last read from the AP (or set by us)
    saved_maxsleep_min: int | None = None  # the AP's own, while a flip's window lowered it
    stuck: dict[str, int] = field(default_factory=dict)  # records with a pending not ours

    def next_job(self, kind: str, content_hash: str = "") -> ApJob:
        self.job_numbers += 1
        return ApJob(kind, content_hash, self.job_numbers)

    def image_queued(self, mac: str) -> bool:
        return any(job.kind == "image" for job in self.jobs.get(mac, ()))


def panel_of_tag_type(description: object) -> LabelModel | None:
    """A ``/tagtypes/HH.json`` document → the panel our content is drawn for (the AP rotates
    with ``rotatebuffer``; we draw width x height as the tag type names them)."""
    if not isinstance(description, dict):
        return None
    width, height = description.get("width"), description.get("height")
    if not isinstance(width, int) or not isinstance(height, int) or width <= 0 or height <= 0:
        return None
    colours = description.get("colortable")
    names = set(colours) if isinstance(colours, dict) else set()
    if {"red", "yellow"} <= names:
        palette = LabelPalette.BWRY
    elif "red" in names:
        palette = LabelPalette.BWR
    elif "yellow" in names:
        palette = LabelPalette.BWY
    else:
        palette = LabelPalette.BW
    return LabelModel(width, height, palette)
