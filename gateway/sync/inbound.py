"""Messages HQ sends down (``down/…``): read within bounds, and accounted for when refused.

Every message the link delivers ends in an acknowledgement (:mod:`gateway.sync.link`). One
that cannot be taken is *refused*: acknowledged, never applied, counted and alerted, because
redelivering it cannot help, and one left unacknowledged holds one of the few messages the
broker lets be in flight to the store — about twenty of them and HQ can no longer reach it.

:func:`load_json` is how a handler reads a JSON document from HQ: at most
:data:`MAX_MESSAGE_BYTES`, nested at most :data:`MAX_DEPTH` levels (checked on the bytes before
parsing, so a deep document never reaches a parser or a recursive walk), and strict JSON — no
NaN or Infinity, no number beyond a double, valid UTF-8 — parsed by orjson. :func:`check_bounds`
is the same size and depth check for a payload that pydantic parses itself. Both raise
:class:`~gateway.errors.MalformedMessageError`, which a handler lets propagate: the link
acknowledges the message and counts it under ``downlink.malformed``.

:class:`RefusalCounter` is the account of one kind of refusal, kept in its alert: raised on the
first, its count and last reason current on every later one (and so across a restart), cleared
once a quiet period passed without a refusal.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from gateway.alerts import Alerts, Severity
from gateway.clock import Clock, isoformat_utc
from gateway.errors import MalformedMessageError, StorageError

__all__ = [
    "MALFORMED_ALERT",
    "MAX_DEPTH",
    "MAX_MESSAGE_BYTES",
    "REFUSAL_QUIET_S",
    "RefusalCounter",
    "check_bounds",
    "expire_refusals",
    "load_json",
    "load_json_object",
]

_LOGGER = logging.getLogger(__name__)

#: The largest message the store reads from HQ (a signed wrapper included). HQ's own tool
#: splits price batches well below it (``[mqtt] max_message_bytes``, 128 KiB by default).
MAX_MESSAGE_BYTES = 1024 * 1024
#: The deepest nesting of objects and arrays the store reads; its messages need 5 at most.
MAX_DEPTH = 32
#: A refusal alert clears after this long without a refusal of its kind.
REFUSAL_QUIET_S = 24 * 3600.0

MALFORMED_ALERT = "downlink.malformed"

_REASON_CHARS = 200  # a reason may quote what the sender chose: keep it short

# A backslash inside a JSON string escapes the next character; only an escaped quote or
# backslash could be mistaken for the end of a string.
_ESCAPED_QUOTE_OR_BACKSLASH = re.compile(rb'\\["\\]')
_ALL_BUT_QUOTES_AND_BRACKETS = bytes(sorted(set(range(256)) - set(b'"[]{}')))
_ARRAYS_AS_OBJECTS = bytes.maketrans(b"[]", b"{}")


def check_bounds(
    payload: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES, max_depth: int = MAX_DEPTH
) -> None:
    """Refuse a payload larger than ``max_bytes`` or nested deeper than ``max_depth``, without
    parsing it (:class:`MalformedMessageError`)."""
    if len(payload) > max_bytes:
        raise MalformedMessageError(f"{len(payload)} bytes, more than the {max_bytes} allowed")
    if payload.count(b"{") + payload.count(b"[") <= max_depth:
        return  # it cannot nest deeper than it has brackets: every small message
    if _nests_deeper(payload, max_depth):
        raise MalformedMessageError(f"nested deeper than {max_depth} levels (or unbalanced)")


def _nests_deeper(payload: bytes, limit: int) -> bool:
    """Whether the brackets outside strings nest deeper than ``limit``, at C speed (a few
    passes over the bytes, no parse). Escaped quotes and backslashes go first, so the quotes
    left delimit strings; of the quotes and brackets kept, an empty pair of quotes is a string
    without brackets (the usual case) and one pass deletes them all — a string holding a
    bracket needs the exact split at the quotes. With arrays folded into objects, each pass
    deleting "{}" takes away exactly the innermost level."""
    if b"\\" in payload:
        payload = _ESCAPED_QUOTE_OR_BACKSLASH.sub(b"", payload)
    skeleton = payload.translate(None, _ALL_BUT_QUOTES_AND_BRACKETS)
    structure = skeleton.replace(b'""', b"")
    if b'"' in structure:  # a string holds a bracket
        structure = b"".join(skeleton.split(b'"')[::2])
    structure = structure.translate(_ARRAYS_AS_OBJECTS)
    for _ in range(limit):
        if not structure:
            return False
        structure = structure.replace(b"{}", b"")
    return bool(structure)


def load_json(
    payload: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES, max_depth: int = MAX_DEPTH
) -> Any:
    """The JSON document in ``payload``, read within bounds as strict JSON; anything else is
    :class:`MalformedMessageError` (never a RecursionError, OverflowError or a NaN)."""
    check_bounds(payload, max_bytes=max_bytes, max_depth=max_depth)
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise MalformedMessageError(f"not JSON: {exc}") from None


def load_json_object(payload: bytes) -> dict[str, Any]:
    """Like :func:`load_json`, for a message that must be a JSON object."""
    document = load_json(payload)
    if not isinstance(document, dict):
        raise MalformedMessageError(f"not a JSON object but {type(document).__name__}")
    return document


class RefusalCounter:
    """One kind of refused message (``key``: its alert), counted where it shows.

    The first refusal raises the alert; every later one keeps its details current —
    ``refused`` (the count), ``last_reason``, ``last_at`` and, when given, ``by_topic`` — and
    they persist with it, so the count survives a restart. The alert is the only record while
    there is one (``storegw status`` reads it too, so they never disagree); :meth:`expire`
    clears it once ``quiet_s`` passed since the last refusal, with the final count. The first
    refusal of an episode is logged as a warning, the others only at debug level.
    """

    def __init__(
        self,
        key: str,
        severity: Severity,
        what: str,
        *,
        alerts: Alerts | None,
        clock: Clock,
        quiet_s: float = REFUSAL_QUIET_S,
    ) -> None:
        self.key = key
        self._severity = severity
        self._what = what
        self._alerts = alerts
        self._clock = clock
        self._quiet_s = quiet_s
        self._episode: dict[str, Any] = {}  # the record when there are no alerts

    @property
    def refused(self) -> int:
        return _count(self._details())

    def status(self) -> dict[str, Any]:
        details = self._details()
        return {
            "refused": _count(details),
            "last_reason": details.get("last_reason"),
            "last_at": details.get("last_at"),
            "by_topic": dict(_by_topic(details)),
            "alert": self.key,
        }

    async def refuse(self, reason: str, *, topic: str | None = None) -> None:
        """Count one refused message (``topic``: where it came, a subscription filter)."""
        reason = reason if len(reason) <= _REASON_CHARS else reason[:_REASON_CHARS] + "…"
        earlier = self._details()
        count = _count(earlier) + 1
        details: dict[str, Any] = {
            "refused": count,
            "last_reason": reason,
            "last_at": isoformat_utc(self._clock.utc_now()),
        }
        if topic is not None:
            by_topic = dict(_by_topic(earlier))
            by_topic[topic] = by_topic.get(topic, 0) + 1
            details["by_topic"] = by_topic
        where = f" on {topic}" if topic else ""
        if count == 1:
            _LOGGER.warning(
                "%s%s: %s (alert %s; further ones are counted in storegw status)",
                self._what,
                where,
                reason,
                self.key,
            )
        else:
            _LOGGER.debug("%s%s (%d so far): %s", self._what, where, count, reason)
        self._episode = details
        if self._alerts is not None:
            message = f"{self._what}{where}: {reason}"
            await self._alerts.raise_(self.key, self._severity, message, details)

    async def expire(self) -> None:
        """Clear the alert once ``quiet_s`` passed without a refusal (the owner's tick)."""
        if self._alerts is None:
            return
        alert = self._alerts.get(self.key)
        if alert is None:
            return
        quiet = (self._clock.utc_now() - alert.updated_at).total_seconds()
        if quiet < self._quiet_s:
            return
        count = _count(alert.details)
        await self._alerts.clear(
            self.key, f"none refused for {self._quiet_s / 3600:g} h; {count} refused in all"
        )
        self._episode = {}

    def _details(self) -> Mapping[str, Any]:
        if self._alerts is None:
            return self._episode
        alert = self._alerts.get(self.key)
        return alert.details if alert is not None else {}


def _count(details: Mapping[str, Any]) -> int:
    count = details.get("refused")
    return count if type(count) is int and count >= 0 else 0


def _by_topic(details: Mapping[str, Any]) -> Mapping[str, int]:
    by_topic = details.get("by_topic")
    if not isinstance(by_topic, dict):
        return {}
    return {str(k): v for k, v in by_topic.items() if type(v) is int}


async def expire_refusals(counters: Sequence[RefusalCounter], *, interval_s: float = 60) -> None:
    """Task ``downlink.refusals``: clear the refusal alerts that went quiet."""
    while True:
        await asyncio.sleep(interval_s)
        for counter in counters:
            try:
                await counter.expire()
            except StorageError as exc:  # the next round tries again
                _LOGGER.warning("refusal alert %s upkeep: %s", counter.key, exc)
