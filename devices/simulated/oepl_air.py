"""The air side of the fake OpenEPaperLink access point (devices/simulated/oepl_ap.py): its
tags' check-ins and sleeps, and the radio that serves one queued job at a time.

Tags check in every ``checkin_s`` (real seconds; compress at will); the radio serves one queued
job at a time, ``radio_s`` each (0: radio timing off). With ``minute_s`` (real seconds per
minute of ``maxsleep``) tags sleep as on the AP instead: each wakes on its own schedule, gets
what is queued for it only when awake, and is told to sleep ``maxsleep`` again after — so a
lowered ``maxsleep`` takes effect tag by tag, at each one's next wake. A tag in
``fail_deliveries`` never answers: "xfer timeout" after 20 attempts. The frames all this causes
go out through :meth:`FakeAir._send` (the access point's websocket).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import zlib
from typing import Any

from devices.esl.protocol import content_hash
from devices.simulated.oepl_tag import FakeTag

__all__ = ["AP_BUFFER_SALT", "PAGE", "FakeAir"]

PAGE = 50  # tag records per /get_db page and per websocket frame
AP_BUFFER_SALT = b"ap-buffer:"  # the AP hashes its converted buffer, not the uploaded file


class FakeAir:
    def __init__(
        self,
        tags: list[FakeTag],
        *,
        radio_s: float,
        checkin_s: float,
        sys_s: float,
        minute_s: float,
    ) -> None:
        self.tags: dict[str, FakeTag] = {tag.mac: tag for tag in tags}
        self.radio_s, self.checkin_s, self.sys_s = radio_s, checkin_s, sys_s
        self.minute_s = minute_s
        self.maxsleep_min = 10
        self.fail_deliveries: set[str] = set()
        self._unmuted = asyncio.Event()
        self._unmuted.set()
        self._awake: set[str] = set()
        self._booted = time.monotonic()
        self._work = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def mute(self) -> bool:
        """Muted: no websocket frames, HTTP requests wait (an AP that stopped answering)."""
        return not self._unmuted.is_set()

    @mute.setter
    def mute(self, value: bool) -> None:
        if value:
            self._unmuted.clear()
        else:
            self._unmuted.set()

    @property
    def sleep_s(self) -> float:
        """How long an idle tag sleeps now (``maxsleep``, with ``minute_s``)."""
        return self.maxsleep_min * self.minute_s

    def uptime_s(self) -> int:
        return int(time.monotonic() - self._booted)

    def set_radio_s(self, seconds: float) -> None:
        """Change the radio time per delivery, at once (a delivery under way starts over)."""
        self.radio_s = seconds
        self._tasks[0].cancel()
        self._tasks[0] = asyncio.create_task(self._radio())
        self._work.set()

    async def _send(self, frame: dict[str, Any]) -> None:
        """One frame to the access point's websocket clients (the access point's own)."""
        raise NotImplementedError

    def _start_air(self) -> None:
        self._tasks = [asyncio.create_task(self._radio()), asyncio.create_task(self._clock())]
        if self.minute_s > 0:
            now = time.monotonic()
            for tag in self.tags.values():  # each on its own phase within one sleep
                tag.wake_at = now + zlib.crc32(tag.mac.encode()) % 1000 / 1000 * self.sleep_s
            self._tasks.append(asyncio.create_task(self._sleepers()))

    async def _stop_air(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _radio(self) -> None:
        while True:
            await self._work.wait()
            self._work.clear()
            while busy := [t for t in self.tags.values() if self._servable(t)]:
                for tag in busy:
                    await self._deliver(tag)

    def _servable(self, tag: FakeTag) -> bool:
        return bool(tag.queue) and not self.mute and (self.minute_s <= 0 or tag.mac in self._awake)

    async def _deliver(self, tag: FakeTag) -> None:
        if self.radio_s > 0:
            await asyncio.sleep(self.radio_s)
        else:
            await asyncio.sleep(0)
        if not tag.queue:
            return  # cleared meanwhile (reboot, clear)
        if tag.mac in self.fail_deliveries:
            tag.queue.clear()  # after 20 attempts the AP drops the tag's queue
            await self._send({"errMsg": f"< {tag.mac} xfer timeout"})
            await self._send({"tags": [tag.record()]})
            return
        kind, data = tag.queue.popleft()
        tag.ap_hash = content_hash(
            AP_BUFFER_SALT + data if kind == "image" else b"led" + os.urandom(4)
        )
        tag.wakeup_reason, tag.last_seen = 0, int(time.time())
        if not tag.queue:  # told to sleep again
            self._awake.discard(tag.mac)
            tag.wake_at = time.monotonic() + self.sleep_s
        await self._send({"logMsg": f"{tag.mac} reports xfer complete"})
        await self._send({"tags": [tag.record()]})

    async def _clock(self) -> None:
        """Every ``checkin_s`` all tags check in (their records on the websocket); every
        ``sys_s`` a system frame."""
        last_checkin = last_sys = time.monotonic()
        while True:
            await asyncio.sleep(min(self.checkin_s, self.sys_s))
            if self.minute_s <= 0 and time.monotonic() - last_checkin >= self.checkin_s:
                last_checkin = time.monotonic()
                now = int(time.time())
                records = []
                for tag in self.tags.values():
                    tag.last_seen, tag.next_checkin = now, now + max(1, int(self.checkin_s))
                    records.append(tag.record())
                for start in range(0, len(records), PAGE):
                    await self._send({"tags": records[start : start + PAGE]})
            if time.monotonic() - last_sys >= self.sys_s:
                last_sys = time.monotonic()
                await self._send({"sys": {"uptime": self.uptime_s(), "apstate": 1}})

    async def _sleepers(self) -> None:
        """With ``minute_s``: tags wake on their own schedule; one with something queued
        stays awake for the radio, the others sleep ``maxsleep`` again."""
        while True:
            now = time.monotonic()
            woken = [t for t in self.tags.values() if t.wake_at <= now and t.mac not in self._awake]
            records = []
            for tag in woken:
                tag.last_seen = int(time.time())
                if tag.queue:
                    self._awake.add(tag.mac)
                    self._work.set()
                else:
                    tag.wake_at = now + self.sleep_s
                tag.next_checkin = int(time.time() + tag.wake_at - now)
                records.append(tag.record())
            for start in range(0, len(records), PAGE):
                await self._send({"tags": records[start : start + PAGE]})
            sleeping = [t.wake_at for t in self.tags.values() if t.mac not in self._awake]
            await asyncio.sleep(min(0.5, max(0.001, min(sleeping, default=now + 0.5) - now)))
