"""The control-socket wire protocol, version 1: pure encode/decode, no I/O (docs/control-socket.md).

Newline-delimited UTF-8 JSON over a unix stream socket, one message per line; a connection may
carry any number of requests, answered in order::

    → {"v": 1, "id": 7, "cmd": "status", "args": {}}
    ← {"v": 1, "id": 7, "ok": true, "result": {...}}
    ← {"v": 1, "id": 7, "ok": false, "error": {"code": "unknown_command", "message": "..."}}

A streaming command answers with any number of ``{"v":1,"id":7,"ok":true,"event":{...}}`` lines,
then ``{"v":1,"id":7,"ok":true,"end":true}`` — or an error line, which also ends the stream.
``id`` is ``null`` in an error about a request that could not be read far enough to find it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum, StrEnum
from pathlib import PurePath
from typing import Any, Literal, TypeAlias, TypedDict

from gateway.clock import isoformat_utc
from gateway.errors import ControlProtocolError, RequestError

__all__ = [
    "MAX_LINE_BYTES",
    "MAX_REPLY_BYTES",
    "PROTOCOL_VERSION",
    "EndMessage",
    "ErrorBody",
    "ErrorCode",
    "ErrorMessage",
    "EventMessage",
    "JSONValue",
    "Reply",
    "ReplyKind",
    "Request",
    "RequestMessage",
    "ResultMessage",
    "decode_reply",
    "decode_request",
    "encode",
    "encode_request",
    "end_message",
    "error_message",
    "event_message",
    "result_message",
]

PROTOCOL_VERSION = 1
#: A request line longer than this is refused with ``bad_request`` and the connection closed.
MAX_LINE_BYTES = 1024 * 1024
#: What the client accepts per reply line (a ``status`` of a large store is bigger than a request).
MAX_REPLY_BYTES = 64 * 1024 * 1024

JSONValue: TypeAlias = "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None"


class ErrorCode(StrEnum):
    """The closed set of error codes; clients branch on these, never on messages."""

    BAD_REQUEST = "bad_request"  # not JSON, wrong field types, line too long
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_COMMAND = "unknown_command"
    INVALID_ARGS = "invalid_args"  # the handler refused its arguments
    INTERNAL = "internal"  # the handler failed; logged with a traceback by the daemon
    BUSY = "busy"  # the daemon serves its maximum of connections; try again later


class RequestMessage(TypedDict):
    v: int
    id: int
    cmd: str
    args: dict[str, JSONValue]


class ErrorBody(TypedDict):
    code: str
    message: str


class ResultMessage(TypedDict):
    v: int
    id: int
    ok: Literal[True]
    result: object  # JSON-ready; checked by encode()


class EventMessage(TypedDict):
    v: int
    id: int
    ok: Literal[True]
    event: object  # JSON-ready; checked by encode()


class EndMessage(TypedDict):
    v: int
    id: int
    ok: Literal[True]
    end: Literal[True]


class ErrorMessage(TypedDict):
    v: int
    id: int | None
    ok: Literal[False]
    error: ErrorBody


@dataclass(frozen=True, slots=True)
class Request:
    """A decoded, valid request."""

    id: int
    cmd: str
    args: dict[str, Any]


class ReplyKind(StrEnum):
    RESULT = "result"
    EVENT = "event"
    END = "end"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Reply:
    """A decoded reply line: ``value`` is the result or event; ``error`` is set for ERROR."""

    id: int | None
    kind: ReplyKind
    value: Any = None
    error: ErrorBody | None = None


def _jsonable(value: object) -> object:
    # Handlers return JSON-ready values; these few types have one obvious wire form.
    if isinstance(value, datetime):
        return isoformat_utc(value)  # naive datetimes raise: the wire always carries an offset
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)  # money is a decimal string, never a float
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def encode(message: Mapping[str, object]) -> bytes:
    """One message as a wire line; ControlProtocolError if it is not JSON-ready."""
    try:
        text = json.dumps(
            message, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_jsonable
        )
    except (TypeError, ValueError, RecursionError) as exc:
        raise ControlProtocolError(f"cannot encode control message: {exc}") from exc
    return text.encode() + b"\n"


def encode_request(request_id: int, cmd: str, args: Mapping[str, Any] | None = None) -> bytes:
    message: RequestMessage = {
        "v": PROTOCOL_VERSION,
        "id": request_id,
        "cmd": cmd,
        "args": dict(args or {}),
    }
    return encode(message)


def result_message(request_id: int, result: object) -> ResultMessage:
    return {"v": PROTOCOL_VERSION, "id": request_id, "ok": True, "result": result}


def event_message(request_id: int, event: object) -> EventMessage:
    return {"v": PROTOCOL_VERSION, "id": request_id, "ok": True, "event": event}


def end_message(request_id: int) -> EndMessage:
    return {"v": PROTOCOL_VERSION, "id": request_id, "ok": True, "end": True}


def error_message(request_id: int | None, code: ErrorCode, message: str) -> ErrorMessage:
    return {
        "v": PROTOCOL_VERSION,
        "id": request_id,
        "ok": False,
        "error": {"code": code.value, "message": message},
    }


def _load(line: bytes) -> object:
    """Strict UTF-8 JSON (``json.loads`` on bytes would also guess UTF-16/32)."""
    # ValueError covers JSONDecodeError, UnicodeDecodeError and Python's int-digits limit;
    # RecursionError is what a line of a million ``[`` raises.
    return json.loads(line.decode("utf-8"))


def decode_request(line: bytes) -> Request:
    """Parse one request line; RequestError carries the error code and the id if readable."""
    try:
        message = _load(line)
    except (ValueError, RecursionError) as exc:
        raise RequestError(ErrorCode.BAD_REQUEST, f"not a JSON line: {exc}") from None
    if not isinstance(message, dict):
        raise RequestError(ErrorCode.BAD_REQUEST, "a request is a JSON object")
    raw_id = message.get("id")
    request_id = raw_id if isinstance(raw_id, int) and not isinstance(raw_id, bool) else None
    if "v" not in message:
        raise RequestError(ErrorCode.BAD_REQUEST, "missing protocol version 'v'", request_id)
    version = message["v"]
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise RequestError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"protocol version {version!r} is not supported; this daemon speaks {PROTOCOL_VERSION}",
            request_id,
        )
    if request_id is None:
        raise RequestError(ErrorCode.BAD_REQUEST, "'id' must be an integer")
    cmd = message.get("cmd")
    if not isinstance(cmd, str) or not cmd:
        raise RequestError(ErrorCode.BAD_REQUEST, "'cmd' must be a non-empty string", request_id)
    args = message.get("args", {})
    if not isinstance(args, dict):
        raise RequestError(ErrorCode.BAD_REQUEST, "'args' must be an object", request_id)
    return Request(request_id, cmd, args)


def decode_reply(line: bytes) -> Reply:
    """Parse one reply line (client side); ControlProtocolError on anything malformed."""
    try:
        message = _load(line)
    except (ValueError, RecursionError) as exc:
        raise ControlProtocolError(f"the daemon sent a malformed line: {exc}") from None
    if not isinstance(message, dict):
        raise ControlProtocolError(f"the daemon sent a non-object: {line[:200]!r}")
    if message.get("v") != PROTOCOL_VERSION:
        raise ControlProtocolError(
            f"the daemon speaks protocol version {message.get('v')!r}, "
            f"this client {PROTOCOL_VERSION}: upgrade one of them"
        )
    raw_id = message.get("id")
    if raw_id is not None and (not isinstance(raw_id, int) or isinstance(raw_id, bool)):
        raise ControlProtocolError(f"reply with a bad id: {line[:200]!r}")
    ok = message.get("ok")
    if ok is False:
        error = message.get("error")
        if not isinstance(error, dict):
            raise ControlProtocolError(f"error reply without an error object: {line[:200]!r}")
        body: ErrorBody = {
            "code": str(error.get("code", "unknown")),
            "message": str(error.get("message", "")),
        }
        return Reply(raw_id, ReplyKind.ERROR, error=body)
    if ok is not True:
        raise ControlProtocolError(f"reply without 'ok': {line[:200]!r}")
    if message.get("end") is True:
        return Reply(raw_id, ReplyKind.END)
    if "event" in message:
        return Reply(raw_id, ReplyKind.EVENT, message["event"])
    if "result" in message:
        return Reply(raw_id, ReplyKind.RESULT, message["result"])
    raise ControlProtocolError(f"reply with neither result, event nor end: {line[:200]!r}")
