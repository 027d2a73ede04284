"""Label ↔ SKU bindings: which SKU each shelf label shows.

A label shows one SKU; a SKU may be on many labels. Bindings come from HQ (signed ``bind`` /
``unbind`` commands) or from a technician (``storegw label bind``); the effective binding is
kept with its source. HQ wins unless a technician set a local override, which stands until the
technician removes it. Binding a label that shows another SKU is refused: unbind it first (a
silent re-point is exactly the mistake a shelf must never make). Every change goes up as a
``label.bound`` / ``label.unbound`` receipt, committed with the change.

:func:`decide_bind` and :func:`decide_unbind` are the rules (no I/O); :class:`LabelBindings`
applies them to SQLite.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from gateway.clock import Clock, isoformat_utc
from gateway.errors import CommandRefusedError
from gateway.store.database import Database
from gateway.store.outbox import Outbox

__all__ = ["Binding", "LabelBindings", "Source", "decide_bind", "decide_unbind"]

Source = Literal["hq", "local"]
_UPSERT = (
    "INSERT INTO label_bindings (label, sku, source, local_override, updated_at) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (label) DO UPDATE SET sku = excluded.sku, "
    "source = excluded.source, local_override = excluded.local_override, "
    "updated_at = excluded.updated_at"
)
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_SKU = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Binding:
    label: str
    sku: str
    source: str
    local_override: bool
    updated_at: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "sku": self.sku,
            "source": self.source,
            "local_override": self.local_override,
            "updated_at": self.updated_at,
        }


def decide_bind(current: Binding | None, label: str, sku: str, source: Source) -> bool:
    """Whether binding ``label`` to ``sku`` changes anything (False: already so); raises
    :class:`CommandRefusedError` when it must not happen."""
    if _LABEL.fullmatch(label) is None:
        raise CommandRefusedError(f"{label!r} is not a label id")
    if _SKU.fullmatch(sku) is None:
        raise CommandRefusedError(f"{sku!r} is not a SKU")
    if current is None:
        return True
    if source == "hq" and current.local_override:
        raise CommandRefusedError(
            f"label {label} is bound locally to {current.sku}; a technician must unbind it first"
        )
    if current.sku != sku:
        raise CommandRefusedError(
            f"label {label} shows SKU {current.sku}; unbind it before binding {sku}"
        )
    return source == "local" and not current.local_override  # a local claim of HQ's binding


def decide_unbind(current: Binding | None, label: str, source: Source) -> bool:
    if current is None:
        return False
    if source == "hq" and current.local_override:
        raise CommandRefusedError(
            f"label {label} is bound locally to {current.sku}; only a technician can unbind it"
        )
    return True


class LabelBindings:
    def __init__(self, database: Database, outbox: Outbox, clock: Clock) -> None:
        self._db = database
        self._outbox = outbox
        self._clock = clock

    async def get(self, label: str) -> Binding | None:
        row = await self._db.fetchone("SELECT * FROM label_bindings WHERE label = ?", (label,))
        return None if row is None else _binding(row)

    async def listing(self, sku: str | None = None) -> list[Binding]:
        rows = await self._db.fetchall(
            "SELECT * FROM label_bindings WHERE ?1 IS NULL OR sku = ?1 ORDER BY label", (sku,)
        )
        return [_binding(row) for row in rows]

    async def bind(self, label: str, sku: str, source: Source) -> Binding:
        current = await self.get(label)
        if decide_bind(current, label, sku, source):
            now = isoformat_utc(self._clock.utc_now())
            override = 1 if source == "local" else 0
            await self._outbox.append_atomic(
                "receipts",
                "label.bound",
                [{"label": label, "sku": sku, "source": source}],
                before=[(_UPSERT, (label, sku, source, override, now))],
            )
        binding = await self.get(label)
        assert binding is not None
        return binding

    async def unbind(self, label: str, source: Source) -> Binding | None:
        """Returns the binding that was removed (None: the label was not bound)."""
        current = await self.get(label)
        if not decide_unbind(current, label, source):
            return None
        assert current is not None
        await self._outbox.append_atomic(
            "receipts",
            "label.unbound",
            [{"label": label, "sku": current.sku, "source": source}],
            before=[("DELETE FROM label_bindings WHERE label = ?", (label,))],
        )
        return current


def _binding(row: Any) -> Binding:
    return Binding(
        label=str(row["label"]),
        sku=str(row["sku"]),
        source=str(row["source"]),
        local_override=bool(row["local_override"]),
        updated_at=str(row["updated_at"]),
    )
