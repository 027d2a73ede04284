"""The OpenEPaperLink (OEPL) access point's wire format, pure (research/esl.md).

- label addresses: a tag's MAC as 16 upper-case hex digits (a 12-digit MAC is left-padded with
  ``0000``), the form the access point and storegw's label ids use;
- tag database records (``GET /get_db`` pages, and the websocket's ``{"tags": [...]}``) as
  :class:`TagRecord`, with what they imply (asleep, timed out, rebooted, low battery);
- websocket frames as typed events: a tag record changed, the access point's system status,
  "xfer complete" (the label's own confirmation), "xfer timeout", the access point rebooting;
- answers to ``POST /imgupload`` and ``/jsonupload``: accepted *means queued*, never shown;
- :func:`content_hash`: the hash the access point reports for a label's confirmed content;
- ``GET /get_ap_config``'s ``maxsleep`` (:func:`decode_maxsleep`) and the 12-byte LED pattern of
  ``/led_flash`` for a flash of about a given length (:func:`led_pattern`).

Nothing here raises on what an access point sends: text that is not JSON, JSON of another
shape, or a record without a usable MAC decodes to ``None``; an optional field of the wrong
type is ``None``. Times are the access point's epoch seconds; callers pass ``now``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeAlias

__all__ = [
    "DEEP_SLEEP_CHECKIN",
    "ApLog",
    "ApRebooting",
    "ApStatus",
    "DbPage",
    "TagRecord",
    "TagsChanged",
    "TransferComplete",
    "TransferTimeout",
    "UploadOutcome",
    "UploadProgress",
    "WsEvent",
    "content_hash",
    "decode_db_page",
    "decode_maxsleep",
    "decode_tag_record",
    "decode_ws_frame",
    "label_address",
    "led_pattern",
    "upload_outcome",
]

#: ``nextcheckin`` of a tag told to sleep until woken: it will not check in by itself.
DEEP_SLEEP_CHECKIN = 3_216_153_600
_CHECKIN_GRACE_S = 600  # the access point's own timeout past ``nextcheckin``
_LOW_BATTERY_MV = 2400
_REBOOT_WAKEUP_REASONS = 0xE0  # wakeupReason at or above: the tag rebooted (its hash is zeroed)
_CAPABILITY_LED = 0x01
_CAPABILITY_NFC = 0x40
_HEX = frozenset("0123456789ABCDEF")


def label_address(text: object) -> str | None:
    """A tag's MAC as 16 upper-case hex digits; 12 digits are left-padded with ``0000``."""
    if not isinstance(text, str):
        return None
    mac = text.strip().upper()
    if len(mac) == 12:
        mac = "0000" + mac
    return mac if len(mac) == 16 and set(mac) <= _HEX else None


def content_hash(payload: bytes) -> str:
    """The hash the access point reports for content it delivered: the first 8 bytes of the
    payload's MD5, then 8 zero bytes, as 32 lower-case hex digits (compare case-insensitively)."""
    digest = hashlib.md5(payload, usedforsecurity=False).digest()
    return (digest[:8] + bytes(8)).hex()


@dataclass(frozen=True, slots=True)
class TagRecord:
    """One tag as the access point knows it. ``None``: the record did not say (usably)."""

    mac: str
    content_hash: str | None  # lower-case; None: nothing confirmed (blank, or rebooted)
    last_seen: int | None
    next_checkin: int | None
    pending: int  # content queued at the access point for this tag
    battery_mv: int | None
    rssi: int | None
    lqi: int | None
    temperature_c: int | None
    hw_type: int | None
    wakeup_reason: int | None
    capabilities: int
    update_count: int | None
    update_last: int | None
    alias: str
    #: Quarter turns the AP gives our image (set per tag in its web UI for a tag mounted turned):
    #: odd, the tag is used upright (portrait) and content is drawn height x width.
    rotate: int = 0

    @property
    def has_led(self) -> bool:
        return bool(self.capabilities & _CAPABILITY_LED)

    @property
    def has_nfc(self) -> bool:
        return bool(self.capabilities & _CAPABILITY_NFC)

    @property
    def asleep(self) -> bool:
        """Told to sleep until woken: silence is expected, not a fault."""
        return self.next_checkin == DEEP_SLEEP_CHECKIN

    @property
    def rebooted(self) -> bool:
        """Its last wake-up was a reboot: it shows nothing the access point sent before."""
        return self.wakeup_reason is not None and self.wakeup_reason >= _REBOOT_WAKEUP_REASONS

    @property
    def low_battery(self) -> bool:
        return self.battery_mv is not None and 0 < self.battery_mv < _LOW_BATTERY_MV

    def timed_out(self, now: int) -> bool:
        """Missed its check-in by more than the access point's grace (epoch seconds)."""
        if self.next_checkin is None or self.asleep:
            return False
        return now > self.next_checkin + _CHECKIN_GRACE_S


def _integer(record: dict[str, Any], key: str) -> int | None:
    value = record.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _hash(value: object) -> str | None:
    if not isinstance(value, str) or len(value) != 32 or not set(value.upper()) <= _HEX:
        return None
    lowered = value.lower()
    return None if lowered == "0" * 32 else lowered


def decode_tag_record(record: object) -> TagRecord | None:
    """A tag database record (a JSON object); None without a usable ``mac``."""
    if not isinstance(record, dict):
        return None
    mac = label_address(record.get("mac"))
    if mac is None:
        return None
    alias = record.get("alias")
    rotate = _integer(record, "rotate")
    return TagRecord(
        mac=mac,
        content_hash=_hash(record.get("hash")),
        last_seen=_integer(record, "lastseen"),
        next_checkin=_integer(record, "nextcheckin"),
        pending=max(0, _integer(record, "pending") or 0),
        battery_mv=_integer(record, "batteryMv"),
        rssi=_integer(record, "RSSI"),
        lqi=_integer(record, "LQI"),
        temperature_c=_integer(record, "temperature"),
        hw_type=_integer(record, "hwType"),
        wakeup_reason=_integer(record, "wakeupReason"),
        capabilities=_integer(record, "capabilities") or 0,
        update_count=_integer(record, "updatecount"),
        update_last=_integer(record, "updatelast"),
        alias=alias if isinstance(alias, str) else "",
        rotate=rotate if rotate in (0, 1, 2, 3) else 0,
    )


@dataclass(frozen=True, slots=True)
class DbPage:
    """One page of ``GET /get_db``: its records, where the next page starts (None: last
    page) and how many records were unusable."""

    records: tuple[TagRecord, ...]
    next_position: int | None
    unusable: int = 0


def _json(text: str | bytes) -> object:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None


def decode_db_page(text: str | bytes) -> DbPage | None:
    """``{"tags": [record, ...], "continu": n}``; ``continu`` 0 or absent: the last page."""
    page = _json(text)
    if not isinstance(page, dict) or not isinstance(page.get("tags"), list):
        return None
    records = [decode_tag_record(record) for record in page["tags"]]
    usable = tuple(record for record in records if record is not None)
    position = _integer(page, "continu")
    return DbPage(usable, position or None, len(records) - len(usable))


# --- websocket ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TagsChanged:
    """A tag checked in or its queue changed: its whole record."""

    records: tuple[TagRecord, ...]


@dataclass(frozen=True, slots=True)
class ApStatus:
    """The periodic ``sys`` frame: the access point is alive (``uptime_s`` falling: it
    rebooted, and every queued upload is gone)."""

    uptime_s: int | None
    ap_state: int | None


@dataclass(frozen=True, slots=True)
class TransferComplete:
    """The label itself reported it received its content: the only confirmation there is.
    (LED and other commands end the same way: match it to what was sent.)"""

    mac: str


@dataclass(frozen=True, slots=True)
class TransferTimeout:
    """The access point gave up delivering to the label; its queue for it is dropped."""

    mac: str


@dataclass(frozen=True, slots=True)
class ApRebooting:
    """The access point restarts: what it held queued is lost."""


@dataclass(frozen=True, slots=True)
class UploadProgress:
    mac: str
    current: int
    total: int


@dataclass(frozen=True, slots=True)
class ApLog:
    """Any other log or error line, kept for diagnostics."""

    text: str
    error: bool


WsEvent: TypeAlias = (
    TagsChanged
    | ApStatus
    | TransferComplete
    | TransferTimeout
    | ApRebooting
    | UploadProgress
    | ApLog
)


def decode_ws_frame(frame: str | bytes) -> WsEvent | None:
    """One websocket frame (a one-key JSON object); None if it is none of the known ones."""
    message = _json(frame)
    if not isinstance(message, dict):
        return None
    if isinstance(tags := message.get("tags"), list):
        records = tuple(r for r in map(decode_tag_record, tags) if r is not None)
        return TagsChanged(records) if records else None
    if isinstance(system := message.get("sys"), dict):
        return ApStatus(_integer(system, "uptime"), _integer(system, "apstate"))
    if isinstance(upload := message.get("upload"), dict):
        return _upload_event(upload)
    for key, error in (("logMsg", False), ("errMsg", True)):
        if isinstance(text := message.get(key), str):
            return _log_event(text, error=error)
    return None


def _upload_event(upload: dict[str, Any]) -> UploadProgress | None:
    mac = label_address(upload.get("src"))
    current, total = _integer(upload, "current"), _integer(upload, "total")
    if mac is None or current is None or total is None:
        return None
    return UploadProgress(mac, current, total)


def _log_event(text: str, *, error: bool) -> WsEvent:
    # "<MAC> reports xfer complete" / "<MAC> xfer timeout"; older firmware prefixes "< " and
    # prints 12 digits, newer prints 16.
    words = text.strip().removeprefix("<").split()
    if words:
        mac = label_address(words[0])
        rest = " ".join(words[1:])
        if mac is not None and rest == "reports xfer complete":
            return TransferComplete(mac)
        if mac is not None and rest == "xfer timeout":
            return TransferTimeout(mac)
    if error and text.strip() == "REBOOTING":
        return ApRebooting()
    return ApLog(text.strip(), error)


# --- uploads --------------------------------------------------------------------------------


class UploadOutcome(StrEnum):
    """What ``POST /imgupload`` or ``/jsonupload`` answered."""

    QUEUED = "queued"  # 200: queued at the access point; the label has shown nothing yet
    BUSY = "busy"  # 409 "come back later": retry after a pause
    UNKNOWN_LABEL = "unknown label"  # 400 "mac not found": not a tag of this access point
    REJECTED = "rejected"  # any other answer: the request itself is wrong


def upload_outcome(status: int, body: str) -> UploadOutcome:
    if status == 200:
        return UploadOutcome.QUEUED
    if status == 409:
        return UploadOutcome.BUSY
    if status == 400 and "mac not found" in body.lower():
        return UploadOutcome.UNKNOWN_LABEL
    return UploadOutcome.REJECTED


# --- AP configuration and LED patterns --------------------------------------------------------

#: ``maxsleep`` of an AP that never saved its configuration (the firmware's default, minutes).
DEFAULT_MAXSLEEP_MIN = 10


def decode_maxsleep(text: str | bytes) -> int | None:
    """``maxsleep`` (minutes an idle tag may sleep, 1-254) from ``GET /get_ap_config``: the
    firmware's default when the AP never saved it; None when the answer is not an AP config."""
    config = _json(text)
    if not isinstance(config, dict):
        return None
    value = config.get("maxsleep", DEFAULT_MAXSLEEP_MIN)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 255:
        return None  # 255 means 5 seconds on the firmware: not a setting storegw restores
    return value


_LED_COLOUR = 0x3C  # green, RGB332
_LED_FLASHES, _LED_SPEED, _LED_PAUSE = 3, 2, 10  # 3 flashes 0.2 s apart, then 1 s dark
_LED_SEQUENCE_S = (_LED_FLASHES * _LED_SPEED + _LED_PAUSE) / 10


def led_pattern(seconds: float) -> str:
    """The ``/led_flash`` pattern flashing for about ``seconds`` (1.6 s steps, at most ~410 s).

    Byte 0 mode 1 (sequences); then three groups of colour (RGB332), flash speed (high nibble,
    0.1 s) with count (low nibble), and the pause after them (0.1 s); then the number of
    repeats after the first sequence, and a spare byte. One group is used here.
    """
    repeats = max(0, min(255, round(seconds / _LED_SEQUENCE_S) - 1))
    group = bytes([_LED_COLOUR, _LED_SPEED << 4 | _LED_FLASHES, _LED_PAUSE])
    return (b"\x81" + group + bytes(6) + bytes([repeats, 0])).hex().upper()
