"""A price push to a fleet, sans I/O: what became of each store's batch.

HQ sends every store its own batch (its own version, scoped to it alone). The push tool then
listens, read-only, to what the stores say anyway — the retained ``state`` (birth/death),
``up/receipts`` (``price.stored``, ``price.applied``, ``price.rejected``), ``up/alerts`` (the
``downlink.signature`` / ``downlink.malformed`` refusals) and ``up/sync`` (the applied version)
— and :class:`FleetPush` turns those messages into one :class:`Outcome` per store. It never
acknowledges custody: that stays with ``storegw hq tail``.

Everything here is pure: messages in (topic, payload bytes), state and a summary out. A
message that cannot be read, or that names another store than its topic, is counted as
garbage and otherwise ignored: it never changes a store's outcome.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from gateway.hq.fleet_summary import (
    EXIT_ALL_APPLIED,
    EXIT_NOT_APPLIED,
    EXIT_REFUSED,
    FleetProgress,
    FleetSummary,
    Outcome,
    StoreResult,
)

__all__ = [
    "EXIT_ALL_APPLIED",
    "EXIT_NOT_APPLIED",
    "EXIT_REFUSED",
    "TOPICS",
    "FleetProgress",
    "FleetPush",
    "FleetSummary",
    "Outcome",
    "StoreResult",
]

#: The subscriptions the push tool needs, relative to a store's topic root.
TOPICS = ("state", "up/receipts", "up/alerts", "up/sync")

_REFUSAL_ALERTS = ("downlink.signature", "downlink.malformed")
#: A refusal alert older than the push by more than the clock skew a store may have is an
#: earlier episode (an unacknowledged alert sent again), not about this batch.
_REFUSAL_SKEW = timedelta(minutes=5)


_FINAL = frozenset({Outcome.APPLIED, Outcome.REFUSED, Outcome.NOT_SENT})
#: Final unless --wait-offline: nothing will come from them before they (re)connect.
_ABSENT = frozenset({Outcome.OFFLINE, Outcome.NEVER_CONNECTED})


@dataclass(slots=True)
class _Store:
    store: str
    version: int  # the version pushed to it
    parts_sent: int = 0
    sent: bool = False  # the broker accepted every part
    send_error: str | None = None
    online: bool | None = None  # from the retained state; None: none seen
    boot: int | None = None
    heard: bool = False  # a receipt, alert or sync came from it during the push
    stored: bool = False  # price.stored for the version pushed
    applied: int = 0  # the highest version known applied
    held: tuple[int, ...] = ()
    refused: str | None = None
    behind_reason: str | None = None  # e.g. parts that expired incomplete
    synced: bool = False  # an up/sync came (the store said what it has and holds)
    retained_over: bool = False  # every retained state came: none means never connected

    def outcome(self) -> Outcome:
        if self.applied >= self.version:
            return Outcome.APPLIED
        if self.refused is not None:
            return Outcome.REFUSED
        if self.send_error is not None:
            return Outcome.NOT_SENT
        if self.online is False:
            return Outcome.OFFLINE
        if self.online or self.heard:
            return Outcome.BEHIND
        return Outcome.NEVER_CONNECTED if self.retained_over else Outcome.NO_ANSWER

    def detail(self) -> str:
        outcome = self.outcome()
        if outcome is Outcome.APPLIED:
            later = f" (v{self.applied} applied)" if self.applied > self.version else ""
            return f"v{self.version} applied{later}"
        if outcome is Outcome.REFUSED:
            return f"v{self.version} refused: {self.refused}"
        if outcome is Outcome.NOT_SENT:
            return f"v{self.version} not sent: {self.send_error}"
        has = f"has v{self.applied}" if self.applied else "no version known"
        if self.held:
            has += f", holds {list(self.held)}"
        if self.behind_reason:
            has += f"; {self.behind_reason}"
        if outcome is Outcome.OFFLINE:
            return f"offline (boot {self.boot}): the broker holds v{self.version}; {has}"
        if outcome is Outcome.BEHIND:
            stage = "stored, not applied yet" if self.stored else "not applied"
            if self.synced and not self.stored and self.version not in self.held:
                # Its up/sync names no refusal of it (a store older than last_refused names none).
                has += (
                    f"; it does not hold v{self.version}: not received, or refused "
                    "(see its storegw status)"
                )
            return f"v{self.version} {stage}; {has}"
        return _unheard(self.version, outcome)


def _unheard(version: int, outcome: Outcome) -> str:
    if outcome is Outcome.NEVER_CONNECTED:
        return (
            f"v{version}: never connected to this broker (no retained state); "
            "the broker holds the batch only if the store has a session"
        )
    return f"v{version}: nothing heard from the store"


class _GarbageError(ValueError):
    """A message the push cannot use (counted, never raised out of :meth:`FleetPush.receive`)."""


@dataclass(slots=True)
class FleetPush:
    """What each target store did with its batch, from the messages it sends up.

    ``versions``: store → the version pushed to it. ``started_at``: when the push began (HQ's
    clock), to tell a refusal of this batch from an earlier episode."""

    versions: Mapping[str, int]
    started_at: datetime
    topic_root: str = "retail/v1/{store_id}/"
    garbage: int = 0
    last_garbage: str | None = None
    _stores: dict[str, _Store] = field(init=False)
    _counts: Counter[Outcome] = field(init=False)
    _sent: int = field(init=False, default=0)
    _head: str = field(init=False)
    _tail: str = field(init=False)

    def __post_init__(self) -> None:
        self._stores = {store: _Store(store, version) for store, version in self.versions.items()}
        self._counts = Counter(state.outcome() for state in self._stores.values())
        self._head, _, self._tail = self.topic_root.partition("{store_id}")

    # --- what the I/O side reports --------------------------------------------------------

    def part_sent(self, store: str, parts: int) -> None:
        """The broker accepted one more of the store's ``parts`` parts."""
        with self._counted(self._stores[store]) as state:
            state.parts_sent += 1
            if not state.sent and state.parts_sent >= parts:
                state.sent = True
                self._sent += 1

    def retained_over(self) -> None:
        """Every retained state the subscription brings has come (the I/O side knows when):
        a target without one never connected to this broker — it no longer holds the push."""
        for state in self._stores.values():
            with self._counted(state):
                state.retained_over = True

    def send_failed(self, store: str, reason: str) -> None:
        with self._counted(self._stores[store]) as state:
            state.send_error = reason

    def receive(self, topic: str, payload: bytes) -> bool:
        """Take one message; True when it changed a store's state. Garbage is counted."""
        try:
            store, subtopic = self._split(topic)
            state = self._stores.get(store)
            if state is None:
                return False  # a store this push did not target
            with self._counted(state):
                return self._take(state, subtopic, _object(payload))
        except _GarbageError as exc:
            self.garbage += 1
            self.last_garbage = f"{topic}: {exc}"
            return False

    # --- what the push tool asks ----------------------------------------------------------

    def sent(self, store: str) -> bool:
        """Whether the broker accepted every part of the store's batch."""
        return self._stores[store].sent

    def outcome(self, store: str) -> Outcome:
        return self._stores[store].outcome()

    def progress(self) -> FleetProgress:
        counts = {outcome: n for outcome, n in self._counts.items() if n}
        return FleetProgress(len(self._stores), self._sent, counts)

    def to_probe(self) -> list[str]:
        """The stores worth asking for their version (``resync``): the broker took their
        batch, their state says online, and neither an applied receipt nor a refusal came."""
        return [
            s.store
            for s in self._stores.values()
            if s.sent and s.online and s.outcome() is Outcome.BEHIND
        ]

    def settled(self, *, wait_offline: bool = False) -> bool:
        """Nothing more to wait for: every store applied, refused or was not sent — or is
        offline (its retained state says so) or never connected (none came), unless
        ``wait_offline``. A store online but not applied yet, or not known yet (the retained
        states still coming), keeps the push waiting until its deadline."""
        final = _FINAL if wait_offline else _FINAL | _ABSENT
        return sum(self._counts[outcome] for outcome in final) == len(self._stores)

    def summary(self, *, elapsed_s: float, deadline_s: float) -> FleetSummary:
        results = tuple(
            StoreResult(s.store, s.version, s.outcome(), s.detail(), s.applied)
            for s in sorted(self._stores.values(), key=lambda s: s.store)
        )
        return FleetSummary(results, elapsed_s, deadline_s, self.garbage, self.last_garbage)

    # --- reading the stores' messages -----------------------------------------------------

    @contextlib.contextmanager
    def _counted(self, state: _Store) -> Iterator[_Store]:
        """Keep the outcome counts current across a change of ``state`` (even one cut short
        by garbage): progress and settled() are then O(1), not a pass over the fleet."""
        before = state.outcome()
        try:
            yield state
        finally:
            after = state.outcome()
            if after is not before:
                self._counts[before] -= 1
                self._counts[after] += 1

    def _take(self, state: _Store, subtopic: str, document: dict[str, Any]) -> bool:
        store = state.store
        if subtopic == "state":
            return _take_state(state, document)
        named = document.get("store")
        if named is not None and named != store:
            raise _GarbageError(f"names store {named!r}, not the topic's {store!r}")
        if subtopic == "up/sync":
            return _take_sync(state, document, self.started_at)
        if subtopic in ("up/receipts", "up/alerts"):
            events = document.get("events")
            if document.get("type") != "events" or not isinstance(events, list):
                raise _GarbageError("not an events envelope")
            changed = False
            for event in events:
                if not isinstance(event, dict):
                    raise _GarbageError("an event that is not an object")
                if subtopic == "up/receipts":
                    changed |= _take_receipt(state, event)
                else:
                    changed |= self._take_alert(state, event)
            return changed
        return False

    def _split(self, topic: str) -> tuple[str, str]:
        if not topic.startswith(self._head):
            raise _GarbageError("outside the topic root")
        store, _, rest = topic[len(self._head) :].partition("/")
        rest = "/" + rest
        if not store or not rest.startswith(self._tail):
            raise _GarbageError("outside the topic root")
        return store, rest[len(self._tail) :]

    def _take_alert(self, state: _Store, event: dict[str, Any]) -> bool:
        if event.get("type") != "alert.raised" or event.get("key") not in _REFUSAL_ALERTS:
            return False
        details = event.get("details")
        if not isinstance(details, dict):
            raise _GarbageError("a refusal alert without details")
        by_topic = details.get("by_topic")
        if event["key"] == "downlink.malformed" and not (
            isinstance(by_topic, dict) and "down/prices" in by_topic
        ):
            return False  # refused something else than a price batch
        updated = _instant(event.get("updated_at"))
        if updated < self.started_at - _REFUSAL_SKEW:
            return False  # an earlier episode
        state.heard = True
        reason = details.get("last_reason") or event.get("message")
        state.refused = f"{event['key']}: {reason}"
        return True


def _object(payload: bytes) -> dict[str, Any]:
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise _GarbageError(f"not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise _GarbageError("not a JSON object")
    return document


def _version(value: object, what: str) -> int:
    if type(value) is not int or value < 0:
        raise _GarbageError(f"{what} is not a version number: {value!r}")
    return value


def _instant(value: object) -> datetime:
    if not isinstance(value, str):
        raise _GarbageError(f"not an instant: {value!r}")
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        raise _GarbageError(f"not an instant: {value!r}") from None
    if instant.tzinfo is None:
        raise _GarbageError(f"an instant without offset: {value!r}")
    return instant


def _take_state(state: _Store, document: dict[str, Any]) -> bool:
    online, boot = document.get("online"), document.get("boot")
    if not isinstance(online, bool) or type(boot) is not int:
        raise _GarbageError("a state without online (boolean) and boot (integer)")
    if state.boot is not None and boot < state.boot:
        return False  # a stale birth or death of an earlier start
    state.online, state.boot = online, boot
    return True


def _take_sync(state: _Store, document: dict[str, Any], started_at: datetime) -> bool:
    if document.get("type") != "sync":
        raise _GarbageError("not a sync request")
    have = _version(document.get("have_version"), "have_version")
    held = document.get("held_versions", [])
    if not isinstance(held, list):
        raise _GarbageError("held_versions is not a list")
    refused = _last_refused(document.get("last_refused"), state.version, started_at)
    state.held = tuple(_version(v, "a held version") for v in held)
    state.heard = state.synced = True
    state.applied = max(state.applied, have)
    if refused is not None:
        state.refused = refused
    return True


def _last_refused(value: object, pushed: int, started_at: datetime) -> str | None:
    """``last_refused`` of an ``up/sync`` (docs/protocol.md): the reason, when it came during
    this push and claims the version pushed (or none: unreadable); else None."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _GarbageError("last_refused is not an object")
    version, reason = value.get("version"), value.get("reason")
    if version is not None:
        version = _version(version, "last_refused.version")
    if not isinstance(reason, str):
        raise _GarbageError("last_refused without a reason")
    at = _instant(value.get("at"))
    if at >= started_at - _REFUSAL_SKEW and version in (pushed, None):
        return f"{reason} (last_refused at {value['at']})"
    return None


def _take_receipt(state: _Store, event: dict[str, Any]) -> bool:
    kind = event.get("type")
    if kind not in ("price.stored", "price.applied", "price.rejected"):
        return False  # label receipts and the like: not about this push
    version = _version(event.get("version"), "version")
    state.heard = True
    if kind == "price.applied":
        state.applied = max(state.applied, version)
    elif version != state.version:
        return True  # about another batch: still a sign of life
    elif kind == "price.stored":
        state.stored = True
    else:
        reason = event.get("reason")
        if not isinstance(reason, str):
            raise _GarbageError("a price.rejected without reason")
        if reason.startswith("incomplete"):
            state.behind_reason = reason  # expired parts: resync asks for it again
        else:
            state.refused = f"price.rejected: {reason}{_problems(event.get('problems'))}"
    return True


def _problems(problems: object) -> str:
    if not isinstance(problems, list) or not problems:
        return ""
    shown = [
        f"{p.get('item')}: {p.get('reason')}" if isinstance(p, dict) else repr(p)
        for p in problems[:3]
    ]
    more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
    return " — " + "; ".join(shown) + more
