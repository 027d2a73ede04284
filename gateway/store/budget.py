"""The outbox byte budget: what is shed, in which order, when the buffer fills (sans-IO).

Every event belongs to a shedding class. As the buffered bytes grow during an outage, classes
stop being admitted in a fixed order, so the data HQ cannot do without keeps the room::

    detail     (dwell detail)      shed at  shed_detail_at    x budget   (default 70 %)
    aggregate  (dwell aggregates)  shed at  shed_aggregate_at x budget   (default 90 %)
    essential  (stock, receipts)   never shed; refused only at budget - alert reserve
    alert      (alerts)            may use the reserve, up to the whole budget

Shed events are dropped and counted (lossy inputs by definition); a refused essential event is
*not* accepted — its producer gets :class:`~gateway.errors.OutboxFullError` and keeps its own
state. :class:`BufferPressure` keeps the counts that the ``buffer.pressure`` alert reports.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Any

__all__ = ["Admission", "BufferBudget", "BufferPressure", "Shed", "default_shed"]


class Shed(IntEnum):
    """Shedding class of an event; lower values are shed first."""

    DETAIL = 1
    AGGREGATE = 2
    ESSENTIAL = 3
    ALERT = 4

    @property
    def label(self) -> str:
        return self.name.lower()


def default_shed(stream: str) -> Shed:
    """The class of a stream's events unless the producer says otherwise."""
    if stream == "alerts":
        return Shed.ALERT
    if stream == "dwell":
        return Shed.AGGREGATE  # dwell detail producers pass Shed.DETAIL
    return Shed.ESSENTIAL


class Admission(Enum):
    ACCEPT = "accept"
    SHED = "shed"  # lossy class over its threshold: dropped and counted
    REFUSE = "refuse"  # essential data over budget - reserve: the producer is told


@dataclass(frozen=True, slots=True)
class BufferBudget:
    budget_bytes: int = 256 * 1024 * 1024
    alert_reserve_bytes: int = 4 * 1024 * 1024
    shed_detail_at: float = 0.7
    shed_aggregate_at: float = 0.9

    def __post_init__(self) -> None:
        if not 0 <= self.alert_reserve_bytes < self.budget_bytes:
            raise ValueError("alert_reserve_bytes must be below budget_bytes")
        if not 0 < self.shed_detail_at <= self.shed_aggregate_at <= 1:
            raise ValueError("need 0 < shed_detail_at <= shed_aggregate_at <= 1")
        if self.limit(Shed.AGGREGATE) > self.limit(Shed.ESSENTIAL):
            raise ValueError("shed_aggregate_at x budget must leave the alert reserve free")

    def limit(self, shed: Shed) -> int:
        """Buffered bytes at which events of class ``shed`` stop being admitted."""
        if shed is Shed.DETAIL:
            return int(self.budget_bytes * self.shed_detail_at)
        if shed is Shed.AGGREGATE:
            return int(self.budget_bytes * self.shed_aggregate_at)
        if shed is Shed.ESSENTIAL:
            return self.budget_bytes - self.alert_reserve_bytes
        return self.budget_bytes

    @property
    def relief_bytes(self) -> int:
        """Below this the pressure is over (10 % of the budget under the first threshold)."""
        return max(0, self.limit(Shed.DETAIL) - self.budget_bytes // 10)


class BufferPressure:
    """Buffered bytes against the budget, and what was shed or refused since pressure began."""

    def __init__(self, budget: BufferBudget, used_bytes: int = 0) -> None:
        self.budget = budget
        self.used_bytes = used_bytes
        self.shed: Counter[str] = Counter()  # "stream/type" -> events dropped
        self.refused: Counter[str] = Counter()  # "stream/type" -> events not accepted
        self.worst: Shed | None = None  # the most important class turned away so far

    def admit(self, shed: Shed, stream: str, event_type: str, count: int, size: int) -> Admission:
        """Decide on ``count`` events of ``size`` bytes in all; an accepted write is counted."""
        if self.used_bytes + size <= self.budget.limit(shed) or (
            shed is Shed.ALERT and self.used_bytes < self.budget.limit(shed)
        ):
            self.used_bytes += size
            return Admission.ACCEPT
        key = f"{stream}/{event_type}"
        if self.worst is None or shed > self.worst:
            self.worst = shed
        if shed <= Shed.AGGREGATE:
            self.shed[key] += count
            return Admission.SHED
        self.refused[key] += count
        return Admission.REFUSE

    def accepts(self, shed: Shed) -> bool:
        """Whether events of ``shed`` are admitted right now (producers may pause on False)."""
        return self.used_bytes < self.budget.limit(shed)

    @property
    def under_pressure(self) -> bool:
        return self.worst is not None

    def relieved(self) -> bool:
        """Pressure began and the buffer has drained well below the first threshold."""
        return self.worst is not None and self.used_bytes < self.budget.relief_bytes

    def reset(self) -> dict[str, Any]:
        """End the episode; returns its final report."""
        report = self.report()
        self.shed.clear()
        self.refused.clear()
        self.worst = None
        return report

    def report(self) -> dict[str, Any]:
        return {
            "used_bytes": self.used_bytes,
            "budget_bytes": self.budget.budget_bytes,
            "paused": [s.label for s in Shed if s <= Shed.AGGREGATE and not self.accepts(s)],
            "shed": dict(sorted(self.shed.items())),
            "refused": dict(sorted(self.refused.items())),
        }

    def summary(self) -> str:
        parts = [f"buffer at {self.used_bytes} of {self.budget.budget_bytes} bytes"]
        if self.shed:
            parts.append(
                "dropped " + ", ".join(f"{n} {key}" for key, n in sorted(self.shed.items()))
            )
        if self.refused:
            parts.append(
                "REFUSED " + ", ".join(f"{n} {key}" for key, n in sorted(self.refused.items()))
            )
        return "; ".join(parts)
