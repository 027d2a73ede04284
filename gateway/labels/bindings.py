"""Label ↔ SKU bindings: which SKU each shelf label shows.

A label shows one SKU; a SKU may be on many labels. Bindings come from HQ (signed ``bind`` /
``unbind`` commands), from a technician (``storegw label bind``) or from the store's seed file
(``storegw label seed FILE``: the planogram at installation); the effective binding is kept
with its source. A technician's local override wins over HQ until the technician removes it;
HQ wins over the seed file; a newer seed file replaces what an older one bound. Otherwise
binding a label that shows another SKU is refused: unbind it first (a silent re-point is
exactly the mistake a shelf must never make). Every change goes up as a ``label.bound`` /
``label.unbound`` receipt, committed with the change.

:func:`decide_bind` and :func:`decide_unbind` are the rules (no I/O); :class:`LabelBindings`
applies them to SQLite.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.clock import Clock, isoformat_utc
from gateway.errors import CommandRefusedError
from gateway.store.database import Database
from gateway.store.outbox import Outbox
from gateway.wire.labels import LabelBound, LabelUnbound

__all__ = [
    "Binding",
    "LabelBindings",
    "SeedResult",
    "Source",
    "check_binding_rows",
    "decide_bind",
    "decide_unbind",
    "read_binding_seed",
]

Source = Literal["hq", "local", "seed"]
_RANK = {"seed": 0, "hq": 1, "local": 2}  # who may re-point a label bound by whom
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
    if source != "local" and current.local_override:
        raise CommandRefusedError(
            f"label {label} is bound locally to {current.sku}; a technician must unbind it first"
        )
    if source == "seed" and current.source == "hq":
        if current.sku == sku:
            return False
        raise CommandRefusedError(f"label {label} is bound by HQ to {current.sku}")
    if current.sku != sku:
        if source != "local" and _RANK[source] > _RANK.get(current.source, 2):
            return True  # HQ re-points a seeded label
        if source == "seed" == current.source:
            return True  # a newer seed file re-points what an older one bound
        raise CommandRefusedError(
            f"label {label} shows SKU {current.sku}; unbind it before binding {sku}"
        )
    if source == "local":
        return not current.local_override  # a local claim of HQ's (or the seed's) binding
    return source == "hq" and current.source == "seed"  # HQ takes a seeded binding over


def decide_unbind(current: Binding | None, label: str, source: Source) -> bool:
    if current is None:
        return False
    if source != "local" and current.local_override:
        raise CommandRefusedError(
            f"label {label} is bound locally to {current.sku}; only a technician can unbind it"
        )
    return True


class LabelBindings:
    def __init__(
        self,
        database: Database,
        outbox: Outbox,
        clock: Clock,
        *,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self._db = database
        self._outbox = outbox
        self._clock = clock
        self.on_change = on_change  # called with the label after a change committed

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
                [LabelBound(label=label, sku=sku, source=source)],
                before=[(_UPSERT, (label, sku, source, override, now))],
            )
            if self.on_change is not None:
                self.on_change(label)
        binding = await self.get(label)
        assert binding is not None
        return binding

    async def seed(self, rows: list[tuple[str, str]]) -> SeedResult:
        """Apply a seed file's ``(label, sku)`` rows (validated by :func:`read_binding_seed`)
        in one transaction: labels nobody bound, or bound by an older seed, get the seed's
        SKU; labels HQ or a technician bound are left alone and listed."""
        current = {binding.label: binding for binding in await self.listing()}
        now = isoformat_utc(self._clock.utc_now())
        changes: list[tuple[str, str]] = []
        result = SeedResult()
        for label, sku in rows:
            try:
                changed = decide_bind(current.get(label), label, sku, "seed")
            except CommandRefusedError as exc:
                result.skipped.append({"label": label, "sku": sku, "reason": str(exc)})
                continue
            if changed:
                changes.append((label, sku))
            else:
                result.unchanged += 1
        if changes:
            await self._outbox.append_atomic(
                "receipts",
                [LabelBound(label=label, sku=sku, source="seed") for label, sku in changes],
                before=[(_UPSERT, (label, sku, "seed", 0, now)) for label, sku in changes],
            )
            if self.on_change is not None:
                for label, _sku in changes:
                    self.on_change(label)
        result.bound = len(changes)
        return result

    async def unbind(self, label: str, source: Source) -> Binding | None:
        """Returns the binding that was removed (None: the label was not bound)."""
        current = await self.get(label)
        if not decide_unbind(current, label, source):
            return None
        assert current is not None
        await self._outbox.append_atomic(
            "receipts",
            [LabelUnbound(label=label, sku=current.sku, source=source)],
            before=[("DELETE FROM label_bindings WHERE label = ?", (label,))],
        )
        if self.on_change is not None:
            self.on_change(label)
        return current


@dataclass(slots=True)
class SeedResult:
    bound: int = 0
    unchanged: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"bound": self.bound, "unchanged": self.unchanged, "skipped": self.skipped}


def read_binding_seed(text: str) -> list[tuple[str, str]]:
    """A seed file: CSV with a ``label,sku`` header (other columns ignored, such as a shelf
    position from the planogram) or JSON (a list of ``{label, sku}``). Every bad row is
    reported at once (ValueError); a label listed twice with different SKUs is refused."""
    if text.lstrip().startswith(("[", "{")):
        loaded = json.loads(text)
        if not isinstance(loaded, list):
            raise ValueError("a JSON seed file is a list of {label, sku} objects")
        return check_binding_rows(loaded)
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or not {"label", "sku"} <= set(reader.fieldnames):
        raise ValueError("a CSV seed file needs a header row with label and sku columns")
    return check_binding_rows(list(reader))


def check_binding_rows(raw: Sequence[object]) -> list[tuple[str, str]]:
    """``{label, sku}`` rows (from a seed file or the control socket) as checked pairs; every
    bad row is reported at once (ValueError)."""
    problems = []
    rows: dict[str, str] = {}
    for number, row in enumerate(raw, start=1):
        if not isinstance(row, Mapping):
            problems.append(f"row {number}: not an object")
            continue
        label, sku = str(row.get("label") or "").strip(), str(row.get("sku") or "").strip()
        if _LABEL.fullmatch(label) is None:
            problems.append(f"row {number}: {label!r} is not a label id")
        elif _SKU.fullmatch(sku) is None:
            problems.append(f"row {number}: {sku!r} is not a SKU")
        elif rows.setdefault(label, sku) != sku:
            problems.append(f"row {number}: label {label} is already listed with {rows[label]}")
    if problems:
        raise ValueError("invalid seed file:\n" + "\n".join(problems[:20]))
    return list(rows.items())


def _binding(row: Any) -> Binding:
    return Binding(
        label=str(row["label"]),
        sku=str(row["sku"]),
        source=str(row["source"]),
        local_override=bool(row["local_override"]),
        updated_at=str(row["updated_at"]),
    )
