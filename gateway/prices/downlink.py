"""``down/prices``: signed price batches, committed before they are acknowledged, applied
exactly once and in version order.

A message is verified (signature, scope, validity), validated item by item, and its part is
committed to ``price_parts``; only then does the handler return and the link acknowledge it to
the broker — a crash before the commit means redelivery, never loss. The sequencer then applies
whatever is next:

- the version after the head, once all its parts are in: one transaction holds the price book
  changes (the statements :class:`PriceBook` gives for them: it alone writes the book), the
  history, the version log, the new head and the ``price.applied`` receipt;
- a complete *full* batch beyond a gap (HQ's answer to a resync): it replaces the book, so the
  held versions below it are superseded;
- a rejected version (bad items) is consumed like an applied one — the head moves on, nothing
  changes, and the ``price.rejected`` receipt lists every bad item.

A version at or below the head is a no-op (a redelivery or a replay). A gap is held and a
resync request goes up on ``up/sync`` (``{have_version}``) every ``resync_interval_s`` until
HQ fills it. Parts of a version that stay incomplete for ``parts_timeout_s`` expire with a
receipt (the version is then a gap, and resync asks for it again).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import orjson

from gateway.alerts import Alerts, Severity
from gateway.clock import Clock, isoformat_utc
from gateway.errors import (
    BatchRejectedError,
    LinkError,
    MalformedMessageError,
    SignatureError,
    StorageError,
)
from gateway.prices.batch import (
    PriceBatch,
    PriceBatchHeader,
    Promotion,
    parse_price_batch,
)
from gateway.prices.book import ItemRow, PriceBook
from gateway.store.database import Database
from gateway.store.outbox import Outbox
from gateway.sync.inbound import RefusalCounter, load_json
from gateway.sync.link import InboundMessage, MqttLink
from gateway.sync.signing import Verifier, check_scope, check_validity
from gateway.wire.prices import (
    BatchKind,
    PriceApplied,
    PriceProblem,
    PriceRejected,
    PriceStored,
)

__all__ = ["AppliedHook", "PriceDownlink", "PriceDownlinkSettings"]

_LOGGER = logging.getLogger(__name__)

SIGNATURE_ALERT = "downlink.signature"
_HEAD_KEY = "price_head"
_LAST_REFUSED_CHARS = 300

# The head only ever moves forward, whatever else happens.
_SET_HEAD = (
    "INSERT INTO meta (key, value) VALUES ('price_head', ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value "
    "WHERE CAST(value AS INTEGER) < CAST(excluded.value AS INTEGER)"
)
_DECIDE = (
    "UPDATE price_versions SET state = ?2, items = ?3, detail = ?4, decided_at = ?5 "
    "WHERE version = ?1"
)
_SUPERSEDE = (
    "UPDATE price_versions SET state = 'superseded', decided_at = ?2 "
    "WHERE version < ?1 AND state IN ('held', 'rejected') AND version > ?3"
)
_PRUNE_VERSIONS = (
    "DELETE FROM price_versions WHERE decided_at < ? AND version < "
    "(SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'price_head')"
)
_STORE_PART = (
    "INSERT OR IGNORE INTO price_parts (version, part, parts, kind, payload, received_at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
# A version that expired incomplete is held again when HQ re-sends it.
_HOLD_VERSION = (
    "INSERT INTO price_versions (version, kind, state, received_at) VALUES (?, ?, 'held', ?) "
    "ON CONFLICT (version) DO UPDATE SET state = 'held', kind = excluded.kind, "
    "received_at = excluded.received_at, detail = '' WHERE state = 'expired'"
)


@dataclass(frozen=True, slots=True)
class PriceDownlinkSettings:
    groups: tuple[str, ...] = ()
    parts_timeout_s: float = 600.0
    resync_interval_s: float = 60.0
    history_days: float = 90.0
    tick_s: float = 5.0


#: Called after a price version committed: (version, SKUs whose price or promotions changed;
#: None for a full batch, which may change any). The label planner hooks in here.
AppliedHook = Callable[[int, Collection[str] | None], None]


@dataclass(slots=True)
class _Held:
    version: int
    kind: str
    parts: int
    have: int
    first_received: str
    state: str
    got: tuple[int, ...] = ()  # the part numbers held
    first_part_at: str | None = None  # when the first of them arrived
    last_part_at: str | None = None  # when the latest of them arrived


@dataclass(frozen=True, slots=True)
class _SetIdentity:
    """What every part of one version must share."""

    kind: str
    parts: int
    scope: dict[str, list[str]]
    issued_at: datetime

    @classmethod
    def of(cls, header: PriceBatchHeader) -> _SetIdentity:
        return cls(header.kind, header.parts, header.scope, header.issued_at)


@dataclass(frozen=True, slots=True)
class _CheckedPart:
    """A valid part as its version's apply needs it. Compact — the validated models of a
    50 000-item list take some 80 MB, this a few — so the parts validated on receipt are kept
    until their version is applied, and a part is validated once (a part received before a
    restart is validated again when its version applies)."""

    digest: bytes  # of the payload it was read from
    identity: _SetIdentity
    skus: tuple[str, ...]
    rows: bytes  # its items as JSON rows [sku, price, currency, unit_price, unit, name,
    # reference_price], comma-separated (the statements' item array, without brackets)
    exact: tuple[ItemRow, ...]  # the items with a NUL in their text (not in ``rows``)
    delete: tuple[str, ...]
    promotions: tuple[Promotion, ...]
    cancel_promotions: tuple[str, ...]

    @classmethod
    def of(cls, batch: PriceBatch, payload: bytes) -> _CheckedPart:
        rows: list[ItemRow] = [
            (i.sku, i.price, i.currency, i.unit_price, i.unit, i.name, i.reference_price)
            for i in batch.items
        ]
        encoded = orjson.dumps(rows)
        exact: list[ItemRow] = []
        if b"\\u0000" in encoded:  # rare: those items go in one by one
            exact = [row for row in rows if any(text and "\0" in text for text in row)]
            encoded = orjson.dumps([row for row in rows if row not in exact])
        return cls(
            digest=_digest(payload),
            identity=_SetIdentity.of(batch.header),
            skus=tuple(item.sku for item in batch.items),
            rows=encoded[1:-1],
            exact=tuple(exact),
            delete=tuple(batch.header.delete),
            promotions=batch.promotions,
            cancel_promotions=tuple(batch.header.cancel_promotions),
        )


class PriceDownlink:
    def __init__(
        self,
        *,
        database: Database,
        outbox: Outbox,
        alerts: Alerts | None,
        clock: Clock,
        verifier: Verifier,
        store_id: str,
        settings: PriceDownlinkSettings | None = None,
        on_applied: AppliedHook | None = None,
        book: PriceBook | None = None,
    ) -> None:
        self._db = database
        self._price_book = book if book is not None else PriceBook(database)
        self.on_applied = on_applied
        self._outbox = outbox
        self._alerts = alerts
        self._clock = clock
        self._verifier = verifier
        self._store_id = store_id
        self.settings = settings or PriceDownlinkSettings()
        self._link: MqttLink | None = None
        self.head = 0
        # Messages refused for their signature, scope or validity (the downlink.signature alert).
        self.refusals = RefusalCounter(
            SIGNATURE_ALERT,
            Severity.CRITICAL,
            "a message on down/prices was refused",
            alerts=alerts,
            clock=clock,
        )
        self._last_resync = -1e18
        # One sequencer at a time: the upkeep tick and message handling both advance.
        self._lock = asyncio.Lock()
        self._prior_prices_due = False  # a batch's second commit failed: the tick retries
        self.last_resync_request: dict[str, Any] | None = None
        # The last batch refused since this start ({version, reason, at}): up/sync carries it,
        # so HQ tells "refused again" (no new alert while one is active) from "not received".
        self.last_refused: dict[str, Any] | None = None
        # Parts validated on receipt, by (version, part), until their version is decided.
        self._checked: dict[tuple[int, int], _CheckedPart] = {}

    def attach(self, link: MqttLink) -> None:
        """Subscribe to ``down/prices``; resync requests go up through the same link."""
        self._link = link
        link.subscribe("down/prices", self.on_message)

    async def load(self) -> None:
        row = await self._db.fetchone("SELECT value FROM meta WHERE key = ?", (_HEAD_KEY,))
        self.head = int(row["value"]) if row is not None else 0
        await self._price_book.settle_prior_prices()  # left over by a stop between two commits

    async def run(self) -> None:
        """Task ``prices.downlink``: expire incomplete parts, repeat resync requests while a
        gap lasts, and prune the price history beyond its retention."""
        next_prune = 0.0
        while True:
            await asyncio.sleep(self.settings.tick_s)
            try:
                await self.advance()
                if self._prior_prices_due:
                    await self.settle_prior_prices()
                if self._clock.monotonic() >= next_prune:
                    next_prune = self._clock.monotonic() + 3600
                    await self.prune_history()
            except StorageError as exc:  # the next tick tries again
                _LOGGER.warning("price downlink upkeep: %s", exc)
            except Exception:  # never let one bad stored batch end the task
                _LOGGER.exception("price downlink upkeep failed; retrying next tick")

    async def prune_history(self) -> None:
        """Forget price history, decided versions and ended or cancelled promotions older
        than the retention (the book itself and the head are never pruned)."""
        now = self._clock.utc_now()
        keep = timedelta(days=self.settings.history_days)
        cutoff = isoformat_utc(now - keep)
        await self._db.submit_atomic(
            [
                *await self._price_book.prune_statements(now=now, keep=keep),
                (_PRUNE_VERSIONS, (cutoff,)),
            ]
        )

    @property
    def refused(self) -> int:
        return self.refusals.refused

    async def settle_prior_prices(self) -> None:
        """Work out the prior prices a batch left to do (after a storage error between its
        two commits); the labels of their SKUs are planned again."""
        async with self._lock:
            skus = await self._price_book.settle_prior_prices()
            self._prior_prices_due = False
        if skus and self.on_applied is not None:
            self.on_applied(self.head, skus)

    def status(self) -> dict[str, Any]:
        return {
            "signing": "ed25519" if self._verifier.signed else "UNSIGNED",
            "key_ids": self._verifier.key_ids,
            "price_version": self.head,
            "refused": self.refused,
            "last_refusal": self.refusals.status()["last_reason"],
            "last_resync_request": self.last_resync_request,
            "last_refused": self.last_refused,
        }

    # --- receiving ------------------------------------------------------------------------

    async def on_message(self, message: InboundMessage) -> None:
        """Store a verified part (the link acks it once this returns), then apply what is due.
        Refusals are answered (alert or receipt) and acknowledged: redelivery cannot help;
        only a storage failure leaves the message unacknowledged (it comes again). An
        unreadable message raises MalformedMessageError, and anything unforeseen its own
        error: the link acknowledges and counts both (never a poison message)."""
        try:
            payload, _kid = self._verifier.open(message.payload)
            # _peek reads the payload within bounds (size, depth) before anything parses it.
            check_scope(_peek(payload, "scope"), self._store_id, self.settings.groups)
            batch = parse_price_batch(payload)
            check_validity(batch.header.issued_at, batch.header.valid_until, self._clock)
        except SignatureError as exc:
            await self._refuse_unauthentic(exc, message.payload)
            return
        except BatchRejectedError as exc:  # addressed to this store, content invalid
            async with self._lock:
                if exc.header is not None and exc.header.parts > 1:
                    # One bad part of several: keep it with the others, so the receipt can
                    # list the bad items of every part once the set is complete.
                    if exc.header.version > self.head:
                        await self._store_part(exc.header, payload)
                else:
                    await self._record_rejection(exc)
                await self._advance()
            return
        async with self._lock:
            if batch.version <= self.head:
                _LOGGER.info("price batch v%d: at or below v%d, no-op", batch.version, self.head)
                return
            if await self._store_part(batch.header, payload):
                self._checked[(batch.version, batch.header.part)] = _CheckedPart.of(batch, payload)
            await self._advance()

    async def _refuse_unauthentic(self, error: SignatureError, raw: bytes) -> None:
        await self.refusals.refuse(str(error))
        self._note_refused(_claimed_version(raw), f"{SIGNATURE_ALERT}: {error}")

    def _note_refused(self, version: int | None, reason: str) -> None:
        self.last_refused = {
            "version": version,
            "reason": reason[:_LAST_REFUSED_CHARS],
            "at": isoformat_utc(self._clock.utc_now()),
        }

    async def _record_rejection(self, error: BatchRejectedError) -> None:
        """A verified batch with bad content: its version is consumed when its turn comes."""
        _LOGGER.warning("%s", error)
        version = error.version
        self._note_refused(version, f"price.rejected: {error}")
        if version is None or version <= self.head:
            return
        now = isoformat_utc(self._clock.utc_now())
        row = await self._db.fetchone(
            "SELECT detail FROM price_versions WHERE version = ? AND state = 'rejected'",
            (version,),
        )
        earlier = json.loads(row["detail"]) if row is not None and row["detail"] else []
        detail = json.dumps([*earlier, *error.problems], separators=(",", ":"))
        await self._db.submit(
            "INSERT INTO price_versions (version, kind, state, detail, received_at) "
            "VALUES (?, 'unknown', 'rejected', ?, ?) ON CONFLICT (version) DO UPDATE SET "
            "state = 'rejected', detail = excluded.detail",
            (version, detail, now),
        )

    async def _store_part(self, header: PriceBatchHeader, payload: bytes) -> bool:
        """Commit a part (True), or leave it: held already, or older than the parts held."""
        row = await self._db.fetchone(
            "SELECT group_concat(part) AS parts FROM price_parts WHERE version = ?",
            (header.version,),
        )
        statements: list[tuple[str, Sequence[Any]]] = []
        have = _part_numbers(row["parts"] if row is not None else None)
        if have:
            stored = await self._held_set(header.version)
            if stored != _SetIdentity.of(header):
                if header.issued_at <= stored.issued_at:
                    _LOGGER.warning(
                        "price batch v%d part %d does not match the parts held (kind, parts, "
                        "scope, issued_at) and is older: ignored",
                        header.version,
                        header.part,
                    )
                    return False
                _LOGGER.warning(
                    "price batch v%d was re-issued at %s: the parts held are replaced",
                    header.version,
                    isoformat_utc(header.issued_at),
                )
                statements.append(("DELETE FROM price_parts WHERE version = ?", (header.version,)))
                self._forget_checked(lambda version: version == header.version)
                have = set()
        if header.part in have:
            return False  # a redelivered part: already committed
        now = isoformat_utc(self._clock.utc_now())
        statements += [
            (_STORE_PART, (header.version, header.part, header.parts, header.kind, payload, now)),
            (_HOLD_VERSION, (header.version, header.kind, now)),
        ]
        # The link waits for this commit before it acks and hands over the next message:
        # a part counts for its records, so a large one commits at once instead of waiting
        # out the group-commit window for writes that cannot come.
        weight = len(statements) + len(header.items) + len(header.promotions)
        if len(have) + 1 < header.parts:
            await self._db.submit_atomic(statements, weight=weight)
            return True
        receipt = PriceStored(version=header.version, kind=header.kind, parts=header.parts)
        await self._outbox.append_atomic("receipts", [receipt], before=statements, weight=weight)
        return True

    async def _held_set(self, version: int) -> _SetIdentity:
        """What the parts held for ``version`` share: known from a part validated since the
        start, else read from one stored part (not every blob)."""
        for (held_version, _part), checked in self._checked.items():
            if held_version == version:
                return checked.identity
        row = await self._db.fetchone(
            "SELECT payload FROM price_parts WHERE version = ? ORDER BY part LIMIT 1", (version,)
        )
        if row is None:
            raise StorageError(self._db.path, f"the parts of price batch v{version} vanished")
        return _SetIdentity.of(PriceBatchHeader.model_validate_json(bytes(row["payload"])))

    def _forget_checked(self, decided: Callable[[int], bool]) -> None:
        for key in [key for key in self._checked if decided(key[0])]:
            del self._checked[key]

    # --- sequencing -----------------------------------------------------------------------

    async def advance(self) -> None:
        """Apply (or consume) every version that is due, then ask for what is missing."""
        async with self._lock:
            await self._advance()

    async def _advance(self) -> None:
        while True:
            held = await self._held()
            due = self._next_due(held)
            if due is None:
                break
            if due.state == "rejected":
                await self._consume_rejected(due)
            else:
                await self._apply(
                    due, superseded=[h.version for h in held if h.version < due.version]
                )
        expired = await self._expire_incomplete(held)
        self._forget_checked(lambda version: version <= self.head or version in expired)
        await self._request_resync_if_gap([h for h in held if h.version not in expired])

    async def _held(self) -> list[_Held]:
        rows = await self._db.fetchall(
            "SELECT v.version, v.kind, v.state, v.received_at, "
            "coalesce(max(p.parts), 0) AS parts, count(p.part) AS have, "
            "group_concat(p.part) AS got, min(p.received_at) AS first_part_at, "
            "max(p.received_at) AS last_part_at "
            "FROM price_versions v LEFT JOIN price_parts p USING (version) "
            "WHERE v.version > ? AND v.state IN ('held', 'rejected') "
            "GROUP BY v.version ORDER BY v.version",
            (self.head,),
        )
        return [
            _Held(
                int(r["version"]),
                str(r["kind"]),
                int(r["parts"]),
                int(r["have"]),
                str(r["received_at"]),
                str(r["state"]),
                tuple(sorted(_part_numbers(r["got"]))),
                r["first_part_at"],
                r["last_part_at"],
            )
            for r in rows
        ]

    def _next_due(self, held: Sequence[_Held]) -> _Held | None:
        def complete(h: _Held) -> bool:
            return h.state == "rejected" or (h.parts > 0 and h.have == h.parts)

        for candidate in held:
            if candidate.version == self.head + 1 and complete(candidate):
                return candidate
        fulls = [h for h in held if h.kind == "full" and h.state == "held" and complete(h)]
        return fulls[-1] if fulls else None  # a full batch needs no predecessor

    async def _consume_rejected(self, held: _Held) -> None:
        row = await self._db.fetchone(
            "SELECT detail FROM price_versions WHERE version = ?", (held.version,)
        )
        problems = json.loads(row["detail"]) if row is not None and row["detail"] else []
        now = isoformat_utc(self._clock.utc_now())
        await self._outbox.append_atomic(
            "receipts",
            [
                PriceRejected(
                    version=held.version,
                    reason="invalid batch",
                    problems=[PriceProblem.recorded(problem) for problem in problems],
                )
            ],
            before=[
                (_DECIDE, (held.version, "rejected", 0, row["detail"] if row else "", now)),
                ("DELETE FROM price_parts WHERE version <= ?", (held.version,)),
                (_SET_HEAD, (str(held.version),)),
            ],
        )
        self.head = held.version
        _LOGGER.warning("price batch v%d rejected and consumed", held.version)

    async def _apply(self, held: _Held, *, superseded: list[int]) -> None:
        version = held.version
        rows = await self._db.fetchall(
            "SELECT part, payload FROM price_parts WHERE version = ? ORDER BY part", (version,)
        )
        if not rows or len(rows) != held.parts:
            _LOGGER.error(
                "price batch v%d: %d of %d parts held, not applied", version, len(rows), held.parts
            )
            return
        parts: list[_CheckedPart] = []
        problems: list[dict[str, Any]] = []
        for row in rows:
            payload = bytes(row["payload"])
            part = self._checked.get((version, int(row["part"])))
            if part is None or part.digest != _digest(payload):  # not validated since start
                try:
                    part = _CheckedPart.of(parse_price_batch(payload), payload)
                except BatchRejectedError as exc:
                    problems.extend(exc.problems)
                    continue
            parts.append(part)
        skus: set[str] = set()
        for part in parts:
            for sku in part.skus:
                if sku in skus:
                    problems.append({"item": sku, "reason": "SKU listed in two parts"})
                skus.add(sku)
        if problems:
            await self._record_rejection(BatchRejectedError(version, problems))
            await self._consume_rejected(
                _Held(version, held.kind, 0, 0, held.first_received, "rejected")
            )
            return
        deletes = sorted({sku for part in parts for sku in part.delete})
        promotions = [promotion for part in parts for promotion in part.promotions]
        cancels = sorted({pid for part in parts for pid in part.cancel_promotions})
        instant = self._clock.utc_now()
        now = isoformat_utc(instant)
        statements = self._price_book.version_statements(
            version=version,
            full=held.kind == "full",
            items=(b"[" + b",".join(part.rows for part in parts if part.rows) + b"]").decode(),
            exact=[row for part in parts for row in part.exact],
            listed=skus,
            deletes=deletes,
            promotions=promotions,
            cancels=cancels,
            now=instant,
        )
        statements += [
            (_DECIDE, (version, "applied", len(skus), "", now)),
            (_SUPERSEDE, (version, now, self.head)),
            ("DELETE FROM price_parts WHERE version <= ?", (version,)),
            (_SET_HEAD, (str(version),)),
        ]
        receipt = PriceApplied(
            version=version,
            kind=cast("BatchKind", held.kind),  # as its header had it: validated here again
            parts=len(parts),
            items=len(skus),
            deleted=len(deletes),
            promotions=len(promotions),
            cancelled_promotions=len(cancels),
            superseded=superseded,
        )
        # One transaction, committed at once (it counts for its records, like a stored part).
        await self._outbox.append_atomic(
            "receipts",
            [receipt],
            before=statements,
            weight=len(statements) + len(skus) + len(deletes),
        )
        self.head = version
        try:  # a second commit: the prior prices of the promotions this batch touched
            await self._price_book.settle_prior_prices()
        except StorageError as exc:  # their labels wait (not ready); the next tick retries
            self._prior_prices_due = True
            _LOGGER.warning("price batch v%d: prior prices not worked out yet: %s", version, exc)
        if self.on_applied is not None:
            changed: set[str] | None = None
            if held.kind != "full":
                changed = {*skus, *deletes, *(p.sku for p in promotions)}
                if cancels:
                    changed.update(await self._price_book.promotion_skus(cancels))
            self.on_applied(version, changed)
        _LOGGER.info(
            "price batch v%d (%s) applied: %d item(s), %d deleted, %d promotion(s)",
            version,
            held.kind,
            len(skus),
            len(deletes),
            len(promotions),
        )

    async def _expire_incomplete(self, held_versions: Sequence[_Held]) -> set[int]:
        """Expire part sets incomplete for ``parts_timeout_s``; returns their versions."""
        deadline = self._clock.utc_now().timestamp() - self.settings.parts_timeout_s
        expired: set[int] = set()
        for held in held_versions:
            if held.state != "held" or held.have == held.parts:
                continue
            first = held.first_part_at or held.first_received
            if datetime.fromisoformat(first).timestamp() > deadline:
                continue
            got = list(held.got)
            now = isoformat_utc(self._clock.utc_now())
            reason = f"incomplete: got part(s) {got} of {held.parts}"
            await self._outbox.append_atomic(
                "receipts",
                [PriceRejected(version=held.version, reason=reason, problems=[])],
                before=[
                    (_DECIDE, (held.version, "expired", 0, reason, now)),
                    ("DELETE FROM price_parts WHERE version = ?", (held.version,)),
                ],
            )
            _LOGGER.warning("price batch v%d expired: %s", held.version, reason)
            expired.add(held.version)
        return expired

    async def _request_resync_if_gap(self, held_versions: Sequence[_Held]) -> None:
        held = [h for h in held_versions if h.version > self.head]
        if not held or self._link is None or not self._gap_in(held):
            return
        if self._clock.monotonic() - self._last_resync < self.settings.resync_interval_s:
            return
        if await self.announce(held=[h.version for h in held]):
            _LOGGER.warning(
                "price version gap after v%d (holding %s): resync requested",
                self.head,
                [h.version for h in held],
            )

    def _gap_in(self, held: Sequence[_Held]) -> bool:
        """Whether HQ must be asked: a version is missing between the head and what is held,
        or a held version's parts have stopped coming for ``resync_interval_s``. The parts of
        the next versions still arriving are no gap (a big batch is held part by part)."""
        versions = [h.version for h in held]
        if versions != list(range(self.head + 1, self.head + 1 + len(versions))):
            return True
        stalled_before = self._clock.utc_now().timestamp() - self.settings.resync_interval_s
        for h in held:
            if h.state != "held" or h.have == h.parts:
                continue
            latest = h.last_part_at or h.first_received
            if datetime.fromisoformat(latest).timestamp() <= stalled_before:
                return True
        return False

    async def announce(self, held: list[int] | None = None) -> dict[str, Any] | None:
        """Publish ``up/sync`` with the applied version (and the held ones): a resync request
        after a gap, or on HQ's ``resync`` command. Returns what was sent (None: link down)."""
        if self._link is None:
            return None
        if held is None:
            held = [h.version for h in await self._held() if h.version > self.head]
        request = {
            "v": 1,
            "type": "sync",
            "store": self._store_id,
            "have_version": self.head,
            "held_versions": held,
            "sent_at": isoformat_utc(self._clock.utc_now()),
        }
        if self.last_refused is not None:
            request["last_refused"] = self.last_refused
        try:
            payload = json.dumps(request, separators=(",", ":")).encode()
            await self._link.publish(f"{self._link.topic_root}up/sync", payload)
        except LinkError as exc:
            _LOGGER.info("sync announcement not sent (will retry): %s", exc)
            return None
        self._last_resync = self._clock.monotonic()
        self.last_resync_request = request
        return request


def _digest(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=16).digest()


def _part_numbers(listed: str | None) -> set[int]:
    """``group_concat`` of part numbers → the set of them."""
    return {int(part) for part in listed.split(",")} if listed else set()


def _claimed_version(raw: bytes) -> int | None:
    """The version a refused message claims (unverified: for HQ's report only), or None."""
    try:
        document = load_json(raw)
        if isinstance(document, dict) and isinstance(document.get("payload"), str):
            document = load_json(base64.b64decode(document["payload"], validate=True))
        version = document.get("version") if isinstance(document, dict) else None
    except (MalformedMessageError, binascii.Error, ValueError):
        return None
    return version if type(version) is int and 0 < version < 2**63 else None


def _peek(payload: bytes, key: str) -> Any:
    """One top-level field of a payload not validated yet (None if it has none);
    MalformedMessageError if it cannot be read at all."""
    document = load_json(payload)
    return document.get(key) if isinstance(document, dict) else None
