"""The control-socket protocol (pure encode/decode; see docs/control-socket.md).

Newline-delimited JSON over a unix stream socket, one message per line, version 1::

    → {"v": 1, "id": 7, "cmd": "status", "args": {}}
    ← {"v": 1, "id": 7, "ok": true, "result": {...}}
    ← {"v": 1, "id": 7, "ok": false, "error": {"code": "unknown_command", "message": "..."}}

A streaming command answers with any number of ``{"v":1,"id":7,"ok":true,"event":{...}}`` lines
and then ``{"v":1,"id":7,"ok":true,"end":true}``.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from gateway.errors import ControlProtocolError

__all__ = [
    "MAX_LINE_BYTES",
    "PROTOCOL_VERSION",
    "ErrorCode",
    "Request",
    "decode_request",
    "decode_response",
    "encode",
    "error_response",
]

PROTOCOL_VERSION = 1
MAX_LINE_BYTES = 1024 * 1024


class ErrorCode(StrEnum):
    BAD_REQUEST = "bad_request"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_COMMAND = "unknown_command"
    INVALID_ARGS = "invalid_args"
    INTERNAL = "internal"


class Request:
    __slots__ = ("args", "cmd", "id")

    def __init__(self, request_id: int, cmd: str, args: dict[str, Any]) -> None:
        self.id = request_id
        self.cmd = cmd
        self.args = args


class RequestError(ControlProtocolError):
    """A request that can be answered with an error (it carries the request id if known)."""

    def __init__(self, code: ErrorCode, message: str, request_id: int | None = None) -> None:
        self.code = code
        self.request_id = request_id
        super().__init__(message)


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"


def error_response(request_id: int | None, code: ErrorCode, message: str) -> dict[str, Any]:
    return {
        "v": PROTOCOL_VERSION,
        "id": request_id,
        "ok": False,
        "error": {"code": code.value, "message": message},
    }


def decode_request(line: bytes) -> Request:
    """Parse one request line; RequestError says what is wrong with it."""
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(ErrorCode.BAD_REQUEST, f"not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise RequestError(ErrorCode.BAD_REQUEST, "a request is a JSON object")
    request_id = message.get("id")
    if not isinstance(request_id, int) or isinstance(request_id, bool):
        raise RequestError(ErrorCode.BAD_REQUEST, "'id' must be an integer")
    if message.get("v") != PROTOCOL_VERSION:
        raise RequestError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"protocol version {message.get('v')!r} not supported (this daemon speaks "
            f"{PROTOCOL_VERSION})",
            request_id,
        )
    cmd = message.get("cmd")
    if not isinstance(cmd, str) or not cmd:
        raise RequestError(ErrorCode.BAD_REQUEST, "'cmd' must be a non-empty string", request_id)
    args = message.get("args", {})
    if not isinstance(args, dict):
        raise RequestError(ErrorCode.BAD_REQUEST, "'args' must be an object", request_id)
    return Request(request_id, cmd, args)


def decode_response(line: bytes) -> dict[str, Any]:
    """Parse one response line (client side); ControlProtocolError on garbage."""
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ControlProtocolError(f"daemon sent garbage: {exc}") from None
    if not isinstance(message, dict) or message.get("v") != PROTOCOL_VERSION:
        raise ControlProtocolError(f"unexpected response from daemon: {line[:200]!r}")
    return message
