"""The HTTP side of one OpenEPaperLink access point, as the ``esl.oepl`` driver uses it: each
call translates transport failures into ``DriverUnavailableError`` and decodes with
:mod:`devices.esl.protocol` (garbage is ``DriverUnavailableError`` too, counted in
``garbled``)."""

from __future__ import annotations

import io
import secrets

import aiohttp
from PIL import Image

from devices.esl.protocol import (
    TagRecord,
    UploadOutcome,
    decode_db_page,
    decode_maxsleep,
    upload_outcome,
)
from gateway.errors import DriverUnavailableError

__all__ = ["HTTP_ERRORS", "ApClient", "jpeg_for_upload"]

HTTP_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)
_PNG = ("PNG",)  # what the label pipeline draws: no probing of other formats


def jpeg_for_upload(png: bytes) -> bytes:
    """Our palette image as /imgupload wants it: JPEG at the best quality, no chroma
    subsampling (with ``dither=0`` the AP maps the pixels to the panel's colours as drawn)."""
    with Image.open(io.BytesIO(png), formats=_PNG) as image:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=100, subsampling=0)
    return buffer.getvalue()


class ApClient:
    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self.garbled = 0

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise DriverUnavailableError("not open")
        return self._session

    def open(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def websocket(self) -> aiohttp.ClientWebSocketResponse:
        try:
            return await self.session.ws_connect(f"{self.url}/ws", heartbeat=None)
        except HTTP_ERRORS as exc:
            raise DriverUnavailableError(f"websocket: {exc}") from exc

    async def tag_page(self, params: dict[str, str]) -> tuple[list[TagRecord], int | None]:
        """One ``/get_db`` page: its records and where the next starts (None: the last)."""
        try:
            async with self.session.get(f"{self.url}/get_db", params=params) as answer:
                text = await answer.read()
        except HTTP_ERRORS as exc:
            raise DriverUnavailableError(f"get_db: {exc}") from exc
        page = decode_db_page(text)
        if page is None:
            self.garbled += 1
            raise DriverUnavailableError("get_db answered something that is not a tag list")
        return list(page.records), page.next_position

    async def tag_type(self, hw_type: int) -> object:
        """``/tagtypes/HH.json`` decoded, or None (missing, unreachable, not JSON)."""
        try:
            async with self.session.get(f"{self.url}/tagtypes/{hw_type:02X}.json") as answer:
                if answer.status != 200:
                    return None
                document: object = await answer.json(content_type=None)
                return document
        except (*HTTP_ERRORS, ValueError):
            return None

    async def upload(self, mac: str, jpeg: bytes) -> UploadOutcome:
        """``mac`` before the file part (the AP needs it first), ``dither=0``; the multipart
        body is built in one piece (aiohttp's form writer costs more than the upload)."""
        boundary = secrets.token_hex(12)
        while boundary.encode() in jpeg:  # pragma: no cover - 2**-96
            boundary = secrets.token_hex(12)
        body = b"".join(
            (
                f"--{boundary}\r\n"
                f'Content-Disposition: form-data; name="mac"\r\n\r\n{mac}\r\n'
                f"--{boundary}\r\n"
                f'Content-Disposition: form-data; name="dither"\r\n\r\n0\r\n'
                f"--{boundary}\r\n"
                f'Content-Disposition: form-data; name="file"; filename="{mac}.jpg"\r\n'
                f"Content-Type: image/jpeg\r\n\r\n".encode(),
                jpeg,
                f"\r\n--{boundary}--\r\n".encode(),
            )
        )
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        try:
            async with self.session.post(
                f"{self.url}/imgupload", data=body, headers=headers
            ) as answer:
                return upload_outcome(answer.status, await answer.text())
        except HTTP_ERRORS as exc:
            raise DriverUnavailableError(f"imgupload to {mac}: {exc}") from exc

    async def maxsleep(self) -> int:
        """The AP's ``maxsleep`` (minutes) from ``/get_ap_config``."""
        try:
            async with self.session.get(f"{self.url}/get_ap_config") as answer:
                status, text = answer.status, await answer.read()
        except HTTP_ERRORS as exc:
            raise DriverUnavailableError(f"get_ap_config: {exc}") from exc
        minutes = decode_maxsleep(text) if status == 200 else None
        if minutes is None:
            self.garbled += status == 200
            raise DriverUnavailableError(f"get_ap_config answered HTTP {status} without maxsleep")
        return minutes

    async def save_maxsleep(self, minutes: int) -> None:
        """``/save_apcfg`` with only ``maxsleep`` (the AP changes only the fields given)."""
        try:
            async with self.session.post(
                f"{self.url}/save_apcfg", data={"maxsleep": str(minutes)}
            ) as answer:
                status, text = answer.status, await answer.text()
        except HTTP_ERRORS as exc:
            raise DriverUnavailableError(f"save_apcfg: {exc}") from exc
        if status != 200 or "saved" not in text.lower():
            raise DriverUnavailableError(f"save_apcfg maxsleep={minutes} refused: HTTP {status}")

    async def led_flash(self, mac: str, pattern: str) -> None:
        params = {"mac": mac, "pattern": pattern}
        try:
            async with self.session.get(f"{self.url}/led_flash", params=params) as answer:
                status = answer.status
        except HTTP_ERRORS as exc:
            raise DriverUnavailableError(f"led_flash: {exc}") from exc
        if status != 200:
            raise DriverUnavailableError(f"led_flash of {mac}: HTTP {status}")

    async def tag_command(self, mac: str, command: str) -> None:
        try:
            async with self.session.post(
                f"{self.url}/tag_cmd", data={"mac": mac, "cmd": command}
            ) as answer:
                status = answer.status
        except HTTP_ERRORS as exc:
            raise DriverUnavailableError(f"tag_cmd {command}: {exc}") from exc
        if status != 200:
            raise DriverUnavailableError(f"tag_cmd {command} for {mac}: HTTP {status}")
