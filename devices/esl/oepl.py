"""``esl.oepl``: one OpenEPaperLink access point over HTTP and its websocket (research/esl.md).

- ``open()`` reads the tag database (``/get_db``, paged only while ``pos`` fits the AP's uint8;
  tags past 255 are read one by one with ``?mac=`` as the websocket names them) and each tag
  type's panel (``/tagtypes/HH.json``);
- ``readings()`` follows ``/ws``: tag records (``SEEN`` with panel, battery, signal and what the
  tag shows by *our* content hash), "xfer complete" matched to the job it ends (``CONFIRMED``
  only for an image of ours; an LED command ends the same way and re-hashes the tag), "xfer
  timeout" (``FAILED`` with that evidence), ``REBOOTING`` or a falling uptime (queued images
  lost: re-pushed), ``sys`` frames (heartbeats), a tag that rebooted (``SEEN`` showing nothing,
  so the core re-pushes), a ``pending`` the AP never serves (``cmd=clear``, re-push);
- ``push()`` uploads to ``/imgupload`` (``mac`` before the file, ``dither=0``, JPEG quality 100)
  and returns once queued; a label with an image still queued keeps only the latest content
  and gets it after the queued one ends; content the tag already shows is not sent again;
- ``flash()`` sends ``/led_flash`` with the firmware's built-in flash pattern.

State the AP holds for us across reconnects is in ``context.memory`` (:class:`ApMemory`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import aiohttp

from devices.esl.oepl_http import HTTP_ERRORS, ApClient, jpeg_for_upload
from devices.esl.oepl_state import ApMemory, OeplOptions, Shown, panel_of_tag_type
from devices.esl.protocol import (
    ApRebooting,
    ApStatus,
    TagRecord,
    TagsChanged,
    TransferComplete,
    TransferTimeout,
    UploadOutcome,
    decode_ws_frame,
    label_address,
)
from devices.kit.plugin import driver_plugin
from gateway.drivers.contracts import (
    DeviceFamily,
    DriverContext,
    Heartbeat,
    LabelContent,
    LabelModel,
    LabelReport,
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
_LAST_POSITION = 255  # /get_db's pos is a uint8 on the AP


class OeplAccessPoint:
    def __init__(self, context: DriverContext, options: OeplOptions) -> None:
        self._context = context
        self._options = options
        self._memory = context.memory.keep(ApMemory)
        self._ap = ApClient(options.url, options.request_timeout_s)
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

    async def open(self) -> None:
        self._ap.open()
        await self._read_database()

    async def close(self) -> None:
        await self._ap.close()

    async def readings(self) -> AsyncIterator[Reading]:
        socket = await self._ap.websocket()
        # Helper tasks are owned here and ended in ``finally`` (a TaskGroup cannot hold a
        # ``yield``: closing the generator would surface as an exception group).
        try:
            for record in list(self._memory.records.values()):
                yield self._seen(record, "listed by the access point")
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
        record = await self._record(content.label_id)
        mac = record.mac
        panel = self._panel(record)
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
        """The firmware's built-in flash pattern (its own length: ``seconds`` is not
        adjustable through /led_flash's pattern here)."""
        del seconds
        record = await self._record(label_id)
        if not record.has_led:
            raise DriverConfigError(f"tag {record.mac} has no LED")
        job = self._memory.next_job("led")
        self._memory.jobs.setdefault(record.mac, deque()).append(job)
        try:
            await self._ap.led_flash(record.mac)
        except DriverUnavailableError:
            self._drop(record.mac, job.number)
            raise

    # --- reading the AP -------------------------------------------------------------------

    async def _read_database(self) -> None:
        position: int | None = 0
        seen: set[str] = set()
        while position is not None and position <= _LAST_POSITION:
            records, position = await self._ap.tag_page({"pos": str(position)})
            for record in records:
                seen.add(record.mac)
                await self._learn(record)
        for mac in [mac for mac in self._memory.records if mac not in seen]:
            records, _ = await self._ap.tag_page({"mac": mac})  # beyond 255, or known before
            for record in records:
                await self._learn(record)

    async def _record(self, label_id: str) -> TagRecord:
        mac = label_address(label_id)
        if mac is None:
            raise DriverConfigError(f"{label_id!r} is not a tag address (16 hex digits)")
        record = self._memory.records.get(mac)
        if record is None:
            records, _ = await self._ap.tag_page({"mac": mac})
            for found in records:
                await self._learn(found)
            record = self._memory.records.get(mac)
        if record is None:
            raise DriverConfigError(f"tag {mac} is not known to {self._options.url}")
        return record

    def _panel(self, record: TagRecord) -> LabelModel | None:
        panel = self._memory.panels.get(record.hw_type) if record.hw_type is not None else None
        return replace(panel, has_led=record.has_led) if panel is not None else None

    async def _learn(self, record: TagRecord) -> None:
        self._memory.records[record.mac] = record
        kind = record.hw_type
        if kind is None or kind in self._memory.panels:
            return
        document = await self._ap.tag_type(kind)
        panel = panel_of_tag_type(document)
        if panel is not None:
            self._memory.panels[kind] = panel

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
        await self._learn(record)
        shown = memory.shown.get(mac)
        if mac in memory.rehash and shown is not None:
            memory.rehash.discard(mac)
            shown.ap_hash = record.content_hash
        if record.pending > 0 and not memory.jobs.get(mac):
            self._spawn(self._clear_stuck(mac))
        self._out.put_nowait(self._seen(record, "check-in"))

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
        """``pending`` with nothing of ours queued: the AP's queue is stuck; clear, re-push."""
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
        for attempt in range(self._options.busy_retries + 1):
            memory.jobs.setdefault(mac, deque()).append(job)  # before: the ack may come first
            try:
                outcome = await self._ap.upload(mac, jpeg)
            except DriverUnavailableError:
                self._drop(mac, job.number)
                raise
            if outcome is UploadOutcome.QUEUED:
                known = memory.shown.get(mac)
                if record.content_hash is not None and (
                    known is None or known.ap_hash != record.content_hash
                ):  # the tag shows something we cannot name: it may be this very content
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

    # --- reports --------------------------------------------------------------------------

    def _seen(self, record: TagRecord, evidence: str) -> LabelReport:
        shown = self._memory.shown.get(record.mac)
        showing = None
        if shown is not None and (shown.ap_hash is None or shown.ap_hash == record.content_hash):
            showing = shown.content_hash
        if record.rebooted and record.content_hash is None:
            showing, evidence = None, "the tag rebooted (hash zeroed)"
            self._memory.shown.pop(record.mac, None)
        return LabelReport(
            label_id=record.mac,
            kind=LabelReportKind.SEEN,
            monotonic=self._context.clock.monotonic(),
            observed_at=self._context.clock.utc_now(),
            content_hash=showing,
            evidence=f"AP {self._options.url}: {evidence}",
            model=self._panel(record),
            battery_mv=record.battery_mv,
            rssi=record.rssi,
            next_checkin=_epoch(record.next_checkin) if not record.asleep else None,
            deep_sleep=record.asleep,
        )

    def _report(self, mac: str, kind: LabelReportKind, content_hash: str, evidence: str) -> None:
        record = self._memory.records.get(mac)
        self._out.put_nowait(
            LabelReport(
                label_id=mac,
                kind=kind,
                monotonic=self._context.clock.monotonic(),
                observed_at=self._context.clock.utc_now(),
                content_hash=content_hash,
                evidence=evidence,
                model=self._panel(record) if record is not None else None,
                battery_mv=record.battery_mv if record is not None else None,
                rssi=record.rssi if record is not None else None,
            )
        )


def _epoch(seconds: int | None) -> datetime | None:
    if seconds is None or seconds <= 0:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


PLUGIN = driver_plugin(
    OeplAccessPoint,
    family=DeviceFamily.ESL,
    options=OeplOptions,
    description="OpenEPaperLink access point (HTTP + websocket)",
    silence_limit=120.0,
)
