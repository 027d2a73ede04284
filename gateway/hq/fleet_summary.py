"""What a fleet price push reports: each store's outcome, the running counts, the summary and
its exit code (:mod:`gateway.hq.fleet` works them out)."""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "EXIT_ALL_APPLIED",
    "EXIT_NOT_APPLIED",
    "EXIT_REFUSED",
    "FleetProgress",
    "FleetSummary",
    "Outcome",
    "StoreResult",
]

#: Exit codes of ``storegw hq push-prices`` (docs/fleet.md): every store applied; some store
#: did not apply within the deadline (behind, offline, no answer, never connected, not sent);
#: some store refused
#: its batch (signature, scope, validity or content: needs someone to look).
EXIT_ALL_APPLIED = 0
EXIT_NOT_APPLIED = 4
EXIT_REFUSED = 5


class Outcome(enum.StrEnum):
    APPLIED = "applied"  # a receipt or up/sync says this version (or a later one) is applied
    REFUSED = "refused"  # the store refused the batch, with the reason
    BEHIND = "behind"  # online (or heard from) but has not applied it
    OFFLINE = "offline"  # its retained state says offline: the broker holds the batch for it
    NO_ANSWER = "no answer"  # nothing known of it yet (the retained states still coming)
    NEVER_CONNECTED = "never connected"  # no retained state once they all came: no such store
    NOT_SENT = "not sent"  # the broker did not accept the batch


@dataclass(frozen=True, slots=True)
class StoreResult:
    store: str
    version: int
    outcome: Outcome
    detail: str
    applied_version: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "version": self.version,
            "outcome": self.outcome.value,
            "detail": self.detail,
            "applied_version": self.applied_version,
        }


@dataclass(frozen=True, slots=True)
class FleetProgress:
    """Counts for a progress bar: how many batches the broker took, how many stores settled."""

    total: int
    sent: int
    counts: Mapping[Outcome, int]

    @property
    def applied(self) -> int:
        return self.counts.get(Outcome.APPLIED, 0)

    @property
    def refused(self) -> int:
        return self.counts.get(Outcome.REFUSED, 0)


@dataclass(frozen=True, slots=True)
class FleetSummary:
    stores: tuple[StoreResult, ...]
    elapsed_s: float
    deadline_s: float
    garbage: int = 0
    last_garbage: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        counted = Counter(result.outcome for result in self.stores)
        return {outcome.value: counted.get(outcome, 0) for outcome in Outcome}

    @property
    def exit_code(self) -> int:
        outcomes = {result.outcome for result in self.stores}
        if Outcome.REFUSED in outcomes:
            return EXIT_REFUSED
        if outcomes - {Outcome.APPLIED}:
            return EXIT_NOT_APPLIED
        return EXIT_ALL_APPLIED

    def versions(self) -> dict[str, int]:
        return {result.store: result.version for result in self.stores}

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.exit_code == EXIT_ALL_APPLIED,
            "exit_code": self.exit_code,
            "elapsed_s": round(self.elapsed_s, 3),
            "deadline_s": self.deadline_s,
            "counts": self.counts,
            "garbage_messages": self.garbage,
            "last_garbage": self.last_garbage,
            "stores": [result.as_dict() for result in self.stores],
        }
