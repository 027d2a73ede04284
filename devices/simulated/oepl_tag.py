"""One tag of the fake OpenEPaperLink access point (devices/simulated/oepl_ap.py), and the tag
types the fake serves."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from devices.esl.protocol import DEEP_SLEEP_CHECKIN

__all__ = ["TAG_TYPES", "FakeTag"]

#: hwType → the tag type file the AP serves (subset of resources/tagtypes).
TAG_TYPES: dict[int, dict[str, Any]] = {
    0x01: {"name": 'M2 2.9"', "width": 296, "height": 128, "rotatebuffer": 1, "bpp": 2,
           "colortable": {"white": [255, 255, 255], "black": [0, 0, 0], "red": [255, 0, 0]}},
    0x00: {"name": 'M2 1.54"', "width": 152, "height": 152, "rotatebuffer": 0, "bpp": 1,
           "colortable": {"white": [255, 255, 255], "black": [0, 0, 0]}},
}  # fmt: skip


@dataclass
class FakeTag:
    mac: str
    hw_type: int = 0x01
    battery_mv: int = 2900
    rssi: int = -60
    capabilities: int = 0x01
    ap_hash: str = "0" * 32
    wakeup_reason: int = 0
    next_checkin: int = 0
    last_seen: int = 0
    queue: deque[tuple[str, bytes]] = field(default_factory=deque)  # ("image"|"led", data)
    stuck_pending: bool = False
    deep_sleep: bool = False
    rotate: int = 0
    wake_at: float = 0.0  # monotonic; with minute_s only

    def record(self) -> dict[str, Any]:
        return {
            "mac": self.mac, "hash": self.ap_hash, "lastseen": self.last_seen,
            "nextupdate": 0, "nextcheckin": DEEP_SLEEP_CHECKIN if self.deep_sleep
            else self.next_checkin, "pending": len(self.queue) or int(self.stuck_pending),
            "alias": "", "contentMode": 24, "LQI": 100, "RSSI": self.rssi, "temperature": 21,
            "batteryMv": self.battery_mv, "hwType": self.hw_type,
            "wakeupReason": self.wakeup_reason, "capabilities": self.capabilities,
            "rotate": self.rotate,
        }  # fmt: skip
