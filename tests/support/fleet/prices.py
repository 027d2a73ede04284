"""A virtual store's price downlink: the real verifier and batch parser, a version book in
memory, and the receipts a store answers with.

Every part goes through the gateway's own checks — :meth:`Verifier.open` (Ed25519),
:func:`check_scope`, :func:`parse_price_batch`, :func:`check_validity` — then versions are
applied in order exactly once, as gateway/prices/downlink.py does (a full batch across a gap,
a version at or below the head a no-op, a gap announced on ``up/sync``). The price book itself
is not kept: a store's book is the gateway's business, benchmarked in bench/prices.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from pydantic import BaseModel

from gateway.clock import Clock, isoformat_utc
from gateway.errors import BatchRejectedError, DownlinkError, SignatureError
from gateway.prices.batch import PriceBatch, parse_price_batch
from gateway.sync.inbound import load_json
from gateway.sync.signing import Verifier, check_scope, check_validity
from gateway.wire.prices import PriceApplied, PriceProblem, PriceRejected, PriceStored

__all__ = ["PriceReceiver", "PriceVerdict"]


@dataclass(slots=True)
class _Held:
    kind: str
    parts: int
    items: int = 0
    deleted: int = 0
    promotions: int = 0
    cancelled: int = 0
    got: set[int] = field(default_factory=set)

    @property
    def complete(self) -> bool:
        return len(self.got) == self.parts


@dataclass(frozen=True, slots=True)
class PriceVerdict:
    """What one message on ``down/prices`` led to: receipts for the ``receipts`` stream (in
    order), and whether the store must announce a gap on ``up/sync``."""

    receipts: list[BaseModel]
    announce_gap: bool = False
    refused: str | None = None  # unauthentic or unreadable: counted, never applied


class PriceReceiver:
    def __init__(self, store_id: str, verifier: Verifier, clock: Clock) -> None:
        self._store_id = store_id
        self._verifier = verifier
        self._clock = clock
        self.head = 0  # the last version applied
        self._held: dict[int, _Held] = {}
        self.refused = 0

    @property
    def held_versions(self) -> list[int]:
        return sorted(version for version in self._held if version > self.head)

    def receive(self, message: bytes) -> PriceVerdict:
        try:
            payload, _kid = self._verifier.open(message)
            document = load_json(payload)
            scope = document.get("scope") if isinstance(document, dict) else None
            check_scope(scope, self._store_id, ())
            batch = parse_price_batch(payload)
            check_validity(batch.header.issued_at, batch.header.valid_until, self._clock)
        except BatchRejectedError as exc:
            if exc.version is None or exc.version <= self.head:
                return PriceVerdict([], refused=str(exc))
            rejected = PriceRejected(
                version=exc.version,
                reason="invalid batch",
                problems=[PriceProblem.recorded(problem) for problem in exc.problems],
            )
            self._held.pop(exc.version, None)
            if exc.version == self.head + 1:
                self.head = exc.version  # consumed
                return PriceVerdict([rejected, *self._apply_due()])
            return PriceVerdict([rejected])
        except (SignatureError, DownlinkError) as exc:
            self.refused += 1
            return PriceVerdict([], refused=str(exc))
        return self._take(batch)

    def _take(self, batch: PriceBatch) -> PriceVerdict:
        header = batch.header
        if header.version <= self.head:
            return PriceVerdict([])  # redelivery or replay: a no-op
        held = self._held.setdefault(header.version, _Held(header.kind, header.parts))
        if header.part in held.got:
            return PriceVerdict([])
        held.got.add(header.part)
        held.items += len(batch.items)
        held.deleted += len(header.delete)
        held.promotions += len(batch.promotions)
        held.cancelled += len(header.cancel_promotions)
        receipts: list[BaseModel] = []
        if held.complete:
            receipts.append(
                PriceStored(version=header.version, kind=held.kind, parts=held.parts)  # type: ignore[arg-type]
            )
        receipts += self._apply_due()
        gap = any(version > self.head + 1 for version in self._held)
        return PriceVerdict(receipts, announce_gap=gap and not receipts)

    def _apply_due(self) -> list[BaseModel]:
        applied: list[BaseModel] = []
        while True:
            due = self._next_due()
            if due is None:
                return applied
            version, held = due
            superseded = sorted(v for v in self._held if self.head < v < version)
            for version_gone in superseded:
                del self._held[version_gone]
            del self._held[version]
            self.head = version
            applied.append(
                PriceApplied(
                    version=version,
                    kind=held.kind,  # type: ignore[arg-type]
                    parts=held.parts,
                    items=held.items,
                    deleted=held.deleted,
                    promotions=held.promotions,
                    cancelled_promotions=held.cancelled,
                    superseded=superseded,
                )
            )

    def _next_due(self) -> tuple[int, _Held] | None:
        following = self._held.get(self.head + 1)
        if following is not None and following.complete:
            return self.head + 1, following
        fulls = [v for v, h in self._held.items() if h.kind == "full" and h.complete]
        if fulls:  # a complete full batch is applied across a gap
            version = max(fulls)
            return version, self._held[version]
        return None

    def sync_request(self) -> bytes:
        """``up/sync``: what is applied, what is held (docs/protocol.md)."""
        request = {
            "v": 1,
            "type": "sync",
            "store": self._store_id,
            "have_version": self.head,
            "held_versions": self.held_versions,
            "sent_at": isoformat_utc(self._clock.utc_now()),
        }
        return json.dumps(request, separators=(",", ":")).encode()
