"""A fake OpenEPaperLink access point: a small working aiohttp HTTP + websocket server.

It follows the access point's behaviour as described in research/esl.md (built from those
notes and the firmware's published sources, not checked against hardware):

- ``POST /imgupload`` (multipart, ``mac`` before the file part) queues the image for the tag
  and answers ``Ok, saved``; content identical to what the tag shows is not queued again;
  ``busy_uploads`` answers the next uploads ``409 Come back later``;
- ``GET /get_db[?mac=][&pos=]`` pages the tag database; ``pos`` is a uint8 as on the AP, so
  paging past 255 records wraps around (the trap a client must avoid);
- ``POST /tag_cmd`` (``clear``, ``reboot``, ``refresh``, ``ledflash``...) and ``GET /led_flash``;
- ``GET /tagtypes/HH.json`` describes the panels; ``GET /get_ap_config`` and ``POST
  /save_apcfg`` read and set ``maxsleep`` (``config_refused``: the AP answers 403);
- ``/ws`` streams ``{"tags": [...]}`` on check-ins and queue changes, ``{"sys": {...}}``
  periodically, ``logMsg`` "<MAC> reports xfer complete", ``errMsg`` "xfer timeout" and
  "REBOOTING".

Check-in timing and the radio are the air side (:mod:`devices.simulated.oepl_air`). The hash a
tag reports is of the AP's own converted buffer (here: the MD5 of a salted upload), never the
gateway's content hash. Fault hooks: :meth:`reboot`, :meth:`reboot_tag`, :meth:`stick_pending`,
``busy_uploads``, ``fail_deliveries`` (a tag that never answers: "xfer timeout" after 20
attempts), ``mute`` (no answers, no frames), ``garbage`` (junk on the websocket and HTTP) and
``slow_s`` (every HTTP answer delayed).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
from typing import Any

from aiohttp import BodyPartReader, WSMsgType, web
from PIL import Image

from devices.esl.protocol import content_hash
from devices.simulated.oepl_air import AP_BUFFER_SALT, PAGE, FakeAir
from devices.simulated.oepl_tag import TAG_TYPES, FakeTag

__all__ = ["TAG_TYPES", "FakeAccessPoint", "FakeTag"]


class FakeAccessPoint(FakeAir):
    """``async with FakeAccessPoint(tags=[...]) as ap:`` serves on ``ap.url``."""

    def __init__(
        self,
        tags: list[FakeTag] | None = None,
        *,
        tag_count: int = 0,
        radio_s: float = 0.0,
        checkin_s: float = 0.2,
        sys_s: float = 0.2,
        minute_s: float = 0.0,
    ) -> None:
        tags = list(tags or []) + [FakeTag(f"0000A0{i:010X}") for i in range(tag_count)]
        super().__init__(tags, radio_s=radio_s, checkin_s=checkin_s, sys_s=sys_s, minute_s=minute_s)
        self.busy_uploads = 0
        self.garbage = False
        self.slow_s = 0.0
        self.uploads: list[str] = []  # macs, in order of accepted uploads
        self.commands: list[tuple[str, str]] = []
        self.config_refused = False
        self.led_seconds: dict[str, float] = {}  # per tag, the length of its last LED pattern
        self.upload_sizes: dict[str, tuple[int, int]] = {}  # per tag, its last image's size
        self._sockets: set[web.WebSocketResponse] = set()
        self._runner: web.AppRunner | None = None
        self.url = ""

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> FakeAccessPoint:
        app = web.Application(middlewares=[self._faults])
        app.router.add_post("/imgupload", self._imgupload)
        app.router.add_get("/get_db", self._get_db)
        app.router.add_post("/tag_cmd", self._tag_cmd)
        app.router.add_get("/led_flash", self._led_flash)
        app.router.add_get("/tagtypes/{name}", self._tagtype)
        app.router.add_post("/save_apcfg", self._save_apcfg)
        app.router.add_get("/get_ap_config", self._get_ap_config)
        app.router.add_get("/ws", self._ws)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        self._start_air()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self._stop_air()
        for socket in list(self._sockets):
            await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # --- fault hooks ----------------------------------------------------------------------

    async def reboot(self) -> None:
        """The AP restarts: every queue is lost, uptime starts again."""
        await self._send({"errMsg": "REBOOTING"})
        for tag in self.tags.values():
            tag.queue.clear()
        self._booted = time.monotonic()

    async def reboot_tag(self, mac: str) -> None:
        tag = self.tags[mac]
        tag.ap_hash, tag.wakeup_reason = "0" * 32, 0xE0
        await self._send({"tags": [tag.record()]})

    def stick_pending(self, mac: str) -> None:
        """The AP believes something is queued that it will never send (cleared by ``clear``)."""
        tag = self.tags[mac]
        tag.queue.clear()
        tag.stuck_pending = True

    # --- HTTP -----------------------------------------------------------------------------

    @web.middleware
    async def _faults(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.slow_s:
            await asyncio.sleep(self.slow_s)
        if self.mute:
            await self._unmuted.wait()
        if self.garbage and request.path != "/ws":
            return web.Response(status=200, text="\x00<html>garbage{")
        response: web.StreamResponse = await handler(request)
        return response

    async def _imgupload(self, request: web.Request) -> web.Response:
        reader = await request.multipart()
        fields: dict[str, bytes] = {}
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                continue
            name = part.name or ""
            if name == "file" and "mac" not in fields:  # the AP needs the mac first
                return web.Response(status=400, text="parameters incomplete")
            fields[name] = bytes(await part.read())
        mac = fields.get("mac", b"").decode("ascii", "replace").upper()
        if "file" not in fields or not mac:
            return web.Response(status=400, text="parameters incomplete")
        tag = self.tags.get(mac)
        if tag is None:
            return web.Response(status=400, text="mac not found")
        if self.busy_uploads > 0:
            self.busy_uploads -= 1
            return web.Response(status=409, text="Come back later")
        with contextlib.suppress(OSError, ValueError), Image.open(io.BytesIO(fields["file"])) as im:
            self.upload_sizes[mac] = im.size
        self.uploads.append(mac)
        frame = tag.record()
        if content_hash(AP_BUFFER_SALT + fields["file"]) == tag.ap_hash:  # identical: not again
            await self._send({"tags": [frame]})
            return web.Response(text="Ok, saved")
        frame["pending"] = len(tag.queue) + 1
        await self._send({"tags": [frame]})  # the queue change is told before any delivery
        tag.queue.append(("image", fields["file"]))
        self._work.set()
        return web.Response(text="Ok, saved")

    async def _get_db(self, request: web.Request) -> web.Response:
        if mac := request.query.get("mac"):
            tag = self.tags.get(mac.upper())
            return web.json_response({"tags": [tag.record()] if tag else [], "continu": 0})
        position = int(request.query.get("pos", "0") or 0) & 0xFF  # a uint8 on the AP
        records = [tag.record() for tag in self.tags.values()][position : position + PAGE]
        following = position + PAGE if position + PAGE < len(self.tags) else 0
        return web.json_response({"tags": records, "continu": following})

    async def _tag_cmd(self, request: web.Request) -> web.Response:
        form = await request.post()
        mac, command = str(form.get("mac", "")).upper(), str(form.get("cmd", ""))
        tag = self.tags.get(mac)
        if tag is None:
            return web.Response(status=400, text="Error: mac not found")
        self.commands.append((mac, command))
        if command == "clear":
            tag.queue.clear()
            tag.stuck_pending = False
        elif command in ("ledflash", "ledflash_long"):
            tag.queue.append(("led", b""))
            self._work.set()
        elif command in ("reboot", "refresh"):
            tag.queue.clear()
        else:
            return web.Response(status=500, text="param error")
        await self._send({"tags": [tag.record()]})
        return web.Response(text="Ok, done")

    async def _led_flash(self, request: web.Request) -> web.Response:
        tag = self.tags.get(request.query.get("mac", "").upper())
        if tag is None:
            return web.Response(status=400, text="Error: mac not found")
        try:
            pattern = bytes.fromhex(request.query.get("pattern", ""))
        except ValueError:
            pattern = b""
        if len(pattern) != 12:
            return web.Response(status=400, text="Error: expects 12 hex bytes in pattern")
        groups = [(pattern[2 + 3 * g] >> 4, pattern[2 + 3 * g] & 15, pattern[3 + 3 * g])
                  for g in range(3)]  # (speed, count, pause), 0.1 s  # fmt: skip
        sequence_s = sum(count * speed + pause for speed, count, pause in groups) / 10
        self.led_seconds[tag.mac] = sequence_s * (pattern[10] + 1)
        self.commands.append((tag.mac, "led_flash"))
        tag.queue.append(("led", b""))
        self._work.set()
        return web.Response(text="ok, request transmitted")

    async def _tagtype(self, request: web.Request) -> web.Response:
        name = request.match_info["name"].removesuffix(".json")
        try:
            kind = TAG_TYPES[int(name, 16)]
        except (ValueError, KeyError):
            return web.Response(status=404, text="not found")
        return web.json_response(kind)

    async def _save_apcfg(self, request: web.Request) -> web.Response:
        form = await request.post()
        if self.config_refused:
            return web.Response(status=403, text="locked")
        with contextlib.suppress(ValueError):
            self.maxsleep_min = int(str(form.get("maxsleep", self.maxsleep_min))) & 0xFF
        return web.Response(text="Ok, saved")

    async def _get_ap_config(self, _request: web.Request) -> web.Response:
        return web.json_response({"apstate": "1", "alias": "", "maxsleep": self.maxsleep_min})

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(heartbeat=None)
        await socket.prepare(request)
        self._sockets.add(socket)
        try:
            async for message in socket:
                if message.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            self._sockets.discard(socket)
        return socket

    async def _send(self, frame: dict[str, Any]) -> None:
        if self.mute:
            return
        text = json.dumps(frame)
        for socket in list(self._sockets):
            with contextlib.suppress(ConnectionError, RuntimeError):
                if self.garbage:
                    await socket.send_str("{not json")
                    await socket.send_bytes(b"\xff\x00")
                await socket.send_str(text)


async def _serve_forever(tags: int, radio_s: float, checkin_s: float) -> None:
    async with FakeAccessPoint(
        tag_count=tags, radio_s=radio_s, checkin_s=checkin_s, sys_s=5.0
    ) as ap:
        print(ap.url, flush=True)  # the one line a parent process reads
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    """``python -m devices.simulated.oepl_ap [--tags 8] [--radio-s 3.9] [--checkin-s 40]``:
    serve a fake AP on a free local port, printing its address (``storegw demo --esl oepl``)."""
    import argparse

    parser = argparse.ArgumentParser(description="a fake OpenEPaperLink access point")
    parser.add_argument("--tags", type=int, default=8)
    parser.add_argument("--radio-s", type=float, default=3.9)
    parser.add_argument("--checkin-s", type=float, default=40.0)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(args.tags, args.radio_s, args.checkin_s))


if __name__ == "__main__":
    main()
