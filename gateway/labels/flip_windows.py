"""The flip windows the label scheduler opened on ESL devices (their labels' check-ins
shortened) and the restore token that closes each: the ``label_flip_windows`` table, this
module's alone, so a window outlives any number of process restarts.

Tokens are kept as the JSON text stored; :func:`decode_token` reads one back (the stored text
may have been damaged: a clear reason instead of a token).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.clock import isoformat_utc
from gateway.drivers.contracts import FlipRestoreToken
from gateway.store.database import Database

__all__ = ["FlipWindow", "FlipWindowStore", "decode_token", "encode_token"]

_OPEN = (
    "INSERT INTO label_flip_windows (device, window_end, token, opened_at) VALUES (?, ?, ?, ?) "
    # A window that grows keeps the token of its first prepare: the settings from before it.
    "ON CONFLICT(device) DO UPDATE SET window_end = max(window_end, excluded.window_end), "
    "token = coalesce(token, excluded.token)"
)


_LONG_AGO = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class FlipWindow:
    device: str
    end: datetime
    token: str | None  # JSON as stored; None: the driver returned none


def encode_token(token: FlipRestoreToken | None) -> str | None:
    return None if token is None else json.dumps(token, sort_keys=True)


def decode_token(text: str) -> FlipRestoreToken | str:
    """The token stored as ``text``, or why it cannot be read."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        return f"not JSON ({exc})"
    if not isinstance(value, dict):
        return f"not a JSON object: {text[:80]!r}"
    token: FlipRestoreToken = {}
    for key, item in value.items():
        if item is not None and not isinstance(item, str | int | float | bool):
            return f"{key!r} is not a plain value: {text[:80]!r}"
        token[key] = item
    return token


def _instant(text: str) -> datetime:
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        return _LONG_AGO
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)


class FlipWindowStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def load(self) -> list[FlipWindow]:
        """Every open window; one whose end cannot be read ended long ago (closed at once)."""
        rows = await self._db.fetchall(
            "SELECT device, window_end, token FROM label_flip_windows ORDER BY device"
        )
        windows = []
        for row in rows:
            token = None if row["token"] is None else str(row["token"])
            windows.append(FlipWindow(str(row["device"]), _instant(str(row["window_end"])), token))
        return windows

    async def open(self, window: FlipWindow, now: datetime) -> None:
        """The window is open until ``window.end`` (or later, if it already was); a token
        stored before stays."""
        await self._db.write(
            _OPEN, (window.device, isoformat_utc(window.end), window.token, isoformat_utc(now))
        )

    async def close(self, device: str) -> None:
        await self._db.write("DELETE FROM label_flip_windows WHERE device = ?", (device,))
