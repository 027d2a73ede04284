"""``esl.oepl``: one OpenEPaperLink access point over HTTP and its websocket (research/esl.md).

- ``open()`` reads the tag database (``/get_db``, paged only while ``pos`` fits the AP's uint8;
  tags past 255 are read one by one with ``?mac=`` as the websocket names them) and each tag
  type's panel (``/tagtypes/HH.json``);
- ``readings()`` follows ``/ws``: tag records (``SEEN`` with panel, battery, signal and what the
  tag shows by *our* content hash), "xfer complete" matched to the job it ends (``CONFIRMED``
  only for an image of ours; an LED command ends the same way and re-hashes the tag), "xfer
  timeout" (``FAILED`` with that evidence), ``REBOOTING`` or a falling uptime (queued images
  lost: re-pushed), ``sys`` frames (heartbeats), a tag that rebooted (``SEEN`` showing nothing,
  and its latest content is pushed again), a ``pending`` of one of our labels the AP never
  serves (``cmd=clear``, re-push);
- ``push()`` uploads to ``/imgupload`` (``mac`` before the file, ``dither=0``, JPEG quality 100)
  and returns once queued; a label with an image still queued keeps only the latest content
  and gets it after the queued one ends; content the tag already shows is not sent again;
- ``flash()`` sends ``/led_flash`` with a pattern of about the length asked for;
- ``prepare_flip()`` / ``restore_checkins()`` lower the AP's ``maxsleep`` for a scheduled
  flip's window and put it back (:mod:`devices.esl.oepl_checkins`; the AP's own value goes to
  the core as the restore token).

Tags and panels are read by :mod:`devices.esl.oepl_tags`. State the AP holds for us across
reconnects is in ``context.memory`` (:class:`ApMemory`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from datetime import datetime
from typing import Any

import aiohttp

from devices.esl.oepl_checkins import CheckinWindow
from devices.esl.oepl_http import HTTP_ERRORS, ApClient, jpeg_for_upload
from devices.esl.oepl_reports import ApReports
from devices.esl.oepl_state import ApMemory, OeplOptions, Shown
from devices.esl.oepl_tags import ApTags
from devices.esl.protocol import (
    ApRebooting,
    ApStatus,
    TagRecord,
    TagsChanged,
    TransferComplete,
    TransferTimeout,
    UploadOutcome,
    decode_ws_frame,
    led_pattern,
)
from devices.kit.plugin import driver_plugin
from gateway.drivers.contracts import (
    DeviceFamily,
    DriverContext,
    FlipRestoreToken,
    Heartbeat,
    LabelContent,
    LabelReportKind,
    Reading,
)
from gateway.errors import (
    DriverConfigError,
    DriverUnavailableError,
    LabelPanelMismatchError,
)

__all__ = ["PLUGIN", "OeplAccessPoint"]

_LOGGER = logging.getLogger(__name__)
_STUCK_RECORDS = 2  # records of one of our tags with a pending not ours before cmd=clear


class OeplAccessPoint:
    def __init__(self, context: DriverContext, options: OeplOptions) -> None:
        self._context = context
        self._options = options
        self._memory = context.memory.keep(ApMemory)
        self._ap = ApClient(options.url, options.request_timeout_s)
        self._tags = ApTags(self._ap, self._memory)
        self._reports = ApReports(self._memory, self._tags, context.clock, options.url)
        self._checkins = CheckinWindow(self._ap, self._memory, options, context.name)
        self._out: asyncio.Queue[Reading | BaseException] = asyncio.Queue()
        self._garbage = 0
        self._following = False
        self._helpers: set[asyncio.Task[None]] = set()

    # --- contract -----------------------------------------------------------------------

    @property
    def labels_per_minute(self) -> float:
        times = self._memory.delivery_times
        if len(times) >= 8 and times[-1] > times[0]:
            return (len(times) - 1) / (times[-1] - times[0]) * 60  # measured
        return 60 / self._options.seconds_per_label

    @property
    def status_detail(self) -> str:
        queued = sum(len(jobs) for jobs in self._memory.jobs.values())
        return (
            f"{len(self._memory.records)} tags, {queued} jobs queued at the AP, "
            f"{self._garbage + self._ap.garbled} garbled answers"
        )

    @property
    def checkin_interval_s(self) -> float:
        return self._checkins.interval_s

    async def prepare_flip(self, window_start: datetime, window_end: datetime) -> FlipRestoreToken:
        return await self._checkins.prepare(window_start, window_end)

    async def restore_checkins(self, token: FlipRestoreToken | None = None) -> str | None:
        return await self._checkins.restore(token)

    async def open(self) -> None:
        self._ap.open()
        await self._tags.read_database()
        await self._checkins.check()

    async def close(self) -> None:
        await self._ap.close()

    async def readings(self) -> AsyncIterator[Reading]:
        socket = await self._ap.websocket()
        # Helper tasks are owned here and ended in ``finally`` (a TaskGroup cannot hold a
        # ``yield``: closing the generator would surface as an exception group).
        try:
            for record in list(self._memory.records.values()):
                yield self._reports.seen(record, "listed by the access point")
            self._following = True
            self._spawn(self._follow(socket))
            while True:
                item = await self._out.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._following = False
            helpers, self._helpers = self._helpers, set()
            for helper in helpers:
                helper.cancel()
            if helpers:
                await asyncio.wait(helpers)
            await socket.close()

    async def push(self, content: LabelContent) -> None:
        record = await self._tags.record(content.label_id)
        mac = record.mac
        panel = self._tags.panel(record)
        if panel is not None and (content.model.width, content.model.height) != (
            panel.width,
            panel.height,
        ):
            raise LabelPanelMismatchError(
                f"content {content.model.width}x{content.model.height} for a "
                f"{panel.width}x{panel.height} panel",
                label=content.label_id,
                panel=panel,
            )
        self._memory.latest[mac] = content
        shown = self._memory.shown.get(mac)
        if self._memory.image_queued(mac):
            self._memory.waiting[mac] = content  # a queued image is not replaced: send later
            return
        if (
            shown is not None
            and shown.content_hash == content.content_hash
            and shown.ap_hash is not None
            and shown.ap_hash == record.content_hash
        ):
            self._report(
                mac,
                LabelReportKind.CONFIRMED,
                content.content_hash,
                f"tag already shows it (AP hash {shown.ap_hash[:16]}): not re-sent",
            )
            return
        await self._upload(content, record)

    async def flash(self, label_id: str, *, seconds: float = 10.0) -> None:
        """An LED pattern of about ``seconds`` (1.6 s steps)."""
        record = await self._tags.record(label_id)
        if not record.has_led:
            raise DriverConfigError(f"tag {record.mac} has no LED")
        job = self._memory.next_job("led")
        self._memory.jobs.setdefault(record.mac, deque()).append(job)
        try:
            await self._ap.led_flash(record.mac, led_pattern(seconds))
        except DriverUnavailableError:
            self._drop(record.mac, job.number)
            raise

    # --- the websocket --------------------------------------------------------------------

    async def _follow(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for message in socket:
                if message.type is aiohttp.WSMsgType.TEXT:
                    await self._on_frame(message.data)
                elif message.type is aiohttp.WSMsgType.BINARY:
                    self._garbage += 1
                else:
                    break
        except HTTP_ERRORS as exc:
            self._out.put_nowait(DriverUnavailableError(f"websocket: {exc}"))
            return
        self._out.put_nowait(DriverUnavailableError("the access point closed the websocket"))

    async def _on_frame(self, text: str) -> None:
        event = decode_ws_frame(text)
        memory = self._memory
        match event:
            case None:
                self._garbage += 1
            case TagsChanged(records=records):
                for record in records:
                    await self._on_record(record)
            case TransferComplete(mac=mac):
                self._on_complete(mac)
            case TransferTimeout(mac=mac):
                for job in memory.jobs.pop(mac, deque()):
                    if job.kind == "image":
                        self._report(
                            mac,
                            LabelReportKind.FAILED,
                            job.content_hash,
                            f"AP {self._options.url}: {mac} xfer timeout (the AP gave "
                            f"up after 20 attempts, job {job.number})",
                        )
                self._send_waiting(mac)
            case ApRebooting():
                self._lost_queues("the access point reported REBOOTING")
            case ApStatus(uptime_s=uptime):
                if uptime is not None:
                    if memory.uptime_s is not None and uptime < memory.uptime_s:
                        self._lost_queues(f"the AP's uptime fell to {uptime} s")
                    memory.uptime_s = uptime
                self._out.put_nowait(Heartbeat(self._context.clock.monotonic(), "sys"))
            case _:
                pass

    async def _on_record(self, record: TagRecord) -> None:
        memory, mac = self._memory, record.mac
        await self._tags.learn(record)
        shown = memory.shown.get(mac)
        if mac in memory.rehash and shown is not None:
            memory.rehash.discard(mac)
            shown.ap_hash = record.content_hash
        rebooted = record.rebooted and record.content_hash is None
        if rebooted and memory.shown.pop(mac, None) is not None:
            latest = memory.latest.get(mac)  # it shows nothing now: its content again
            if latest is not None and not memory.image_queued(mac):
                _LOGGER.info("%s: tag %s rebooted: its content again", self._context.name, mac)
                self._spawn(self._push_later(latest))
        if record.pending > 0 and not memory.jobs.get(mac) and mac in memory.latest:
            memory.stuck[mac] = memory.stuck.get(mac, 0) + 1
            if memory.stuck[mac] == _STUCK_RECORDS:  # still there: stuck, not just queued
                self._spawn(self._clear_stuck(mac))
        else:
            memory.stuck.pop(mac, None)
        self._out.put_nowait(self._reports.seen(record, "check-in"))

    def _on_complete(self, mac: str) -> None:
        memory = self._memory
        jobs = memory.jobs.get(mac)
        job = jobs.popleft() if jobs else None
        memory.rehash.add(mac)  # the AP re-hashes the tag after any completed job
        if job is None or job.kind != "image":
            return  # an LED command (or another client's job): nothing new is shown
        memory.shown[mac] = Shown(job.content_hash, None)
        memory.delivery_times.append(self._context.clock.monotonic())
        self._report(
            mac,
            LabelReportKind.CONFIRMED,
            job.content_hash,
            f"AP {self._options.url}: {mac} reports xfer complete (job {job.number})",
        )
        self._send_waiting(mac)

    def _lost_queues(self, why: str) -> None:
        for mac, jobs in list(self._memory.jobs.items()):
            lost = any(job.kind == "image" for job in jobs)
            jobs.clear()
            if lost and mac not in self._memory.waiting and mac in self._memory.latest:
                self._memory.waiting[mac] = self._memory.latest[mac]
            _LOGGER.info("%s: %s lost its queue (%s): re-push", self._context.name, mac, why)
            self._send_waiting(mac)

    def _send_waiting(self, mac: str) -> None:
        content = self._memory.waiting.pop(mac, None)
        if content is not None:
            self._spawn(self._push_later(content))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        if not self._following:
            work.close()  # not following the AP: the next start reads its state again
            return
        helper = asyncio.create_task(work)
        self._helpers.add(helper)
        helper.add_done_callback(self._helper_done)

    def _helper_done(self, helper: asyncio.Task[None]) -> None:
        self._helpers.discard(helper)
        if not helper.cancelled() and (error := helper.exception()) is not None:
            self._out.put_nowait(error)  # a bug in a helper ends readings() with it

    async def _push_later(self, content: LabelContent) -> None:
        try:
            await self.push(content)
        except (DriverUnavailableError, DriverConfigError, LabelPanelMismatchError) as exc:
            self._report(
                content.label_id,
                LabelReportKind.FAILED,
                content.content_hash,
                f"re-push failed: {exc}",
            )

    async def _clear_stuck(self, mac: str) -> None:
        """One of our tags kept a ``pending`` with nothing of ours queued: the AP's queue is
        stuck; clear, re-push. (On an AP shared with another client, its content queued for
        one of our tags is cleared too: the risk docs/drivers.md names.)"""
        self._memory.stuck.pop(mac, None)
        try:
            await self._ap.tag_command(mac, "clear")
        except DriverUnavailableError:
            return
        latest = self._memory.latest.get(mac)
        shown = self._memory.shown.get(mac)
        if latest is not None and (shown is None or shown.content_hash != latest.content_hash):
            await self._push_later(latest)

    # --- uploads --------------------------------------------------------------------------

    async def _upload(self, content: LabelContent, record: TagRecord) -> None:
        mac, memory = record.mac, self._memory
        jpeg = jpeg_for_upload(content.image_png)
        job = memory.next_job("image", content.content_hash)
        known = memory.shown.get(mac)
        # The tag shows something we cannot name: it may be this very content (judged before
        # the upload: its own completion may come before the answer).
        unnamed = record.content_hash is not None and (
            known is None or known.ap_hash != record.content_hash
        )
        for attempt in range(self._options.busy_retries + 1):
            memory.jobs.setdefault(mac, deque()).append(job)  # before: the ack may come first
            try:
                outcome = await self._ap.upload(mac, jpeg)
            except DriverUnavailableError:
                self._drop(mac, job.number)
                raise
            if outcome is UploadOutcome.QUEUED:
                if unnamed and any(j.number == job.number for j in memory.jobs.get(mac, ())):
                    await self._check_identical(mac, job.number, content, record)
                return
            self._drop(mac, job.number)
            if outcome is UploadOutcome.UNKNOWN_LABEL:
                raise DriverConfigError(f"tag {mac} is not known to {self._options.url}")
            if outcome is UploadOutcome.REJECTED:
                raise DriverUnavailableError(f"imgupload to {mac} rejected")
            await asyncio.sleep(self._options.busy_backoff_s * 2**attempt)  # 409: come back later
        raise DriverUnavailableError(f"the AP stayed busy (409) for {mac}")

    async def _check_identical(
        self, mac: str, number: int, content: LabelContent, before: TagRecord
    ) -> None:
        """The AP does not queue content identical to what the tag shows (and says nothing):
        nothing pending, the hash unchanged and our job not ended means the tag shows it."""
        records, _ = await self._ap.tag_page({"mac": mac})
        jobs = self._memory.jobs.get(mac, deque())
        if not any(job.number == number for job in jobs):
            return  # ended meanwhile
        for record in records:
            if record.pending == 0 and record.content_hash == before.content_hash:
                self._drop(mac, number)
                self._memory.shown[mac] = Shown(content.content_hash, record.content_hash)
                self._report(
                    mac,
                    LabelReportKind.CONFIRMED,
                    content.content_hash,
                    f"AP {self._options.url}: not queued, the tag already shows this "
                    f"content (AP hash {record.content_hash})",
                )
                self._send_waiting(mac)

    def _drop(self, mac: str, number: int) -> None:
        jobs = self._memory.jobs.get(mac)
        if jobs:
            self._memory.jobs[mac] = deque(job for job in jobs if job.number != number)

    def _report(self, mac: str, kind: LabelReportKind, content_hash: str, evidence: str) -> None:
        self._out.put_nowait(self._reports.delivery(mac, kind, content_hash, evidence))


PLUGIN = driver_plugin(
    OeplAccessPoint,
    family=DeviceFamily.ESL,
    options=OeplOptions,
    description="OpenEPaperLink access point (HTTP + websocket)",
    silence_limit=120.0,
)
