"""Label bindings: one SKU per label, HQ wins unless overridden locally, every change reported."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from gateway.clock import FakeClock
from gateway.errors import CommandRefusedError
from gateway.events import validate_event
from gateway.labels.bindings import Binding, LabelBindings, decide_bind, decide_unbind
from gateway.store import Database
from gateway.store.outbox import Outbox


@asynccontextmanager
async def bindings(tmp_path: Path) -> AsyncIterator[tuple[LabelBindings, Outbox]]:
    clock = FakeClock()
    async with Database.running(tmp_path / "g.db", clock=clock) as db:
        outbox = Outbox(db, clock)
        await outbox.open(("receipts",))
        yield LabelBindings(db, outbox, clock), outbox


def test_rules() -> None:
    hq = Binding("L1", "A", "hq", local_override=False, updated_at="t")
    local = Binding("L1", "A", "local", local_override=True, updated_at="t")
    assert decide_bind(None, "L1", "A", "hq") is True
    assert decide_bind(hq, "L1", "A", "hq") is False  # already so: idempotent
    assert decide_bind(hq, "L1", "A", "local") is True  # a technician takes it over
    with pytest.raises(CommandRefusedError, match="unbind it before"):
        decide_bind(hq, "L1", "B", "hq")  # never a silent re-point
    with pytest.raises(CommandRefusedError, match="bound locally"):
        decide_bind(local, "L1", "A", "hq")
    with pytest.raises(CommandRefusedError, match="only a technician"):
        decide_unbind(local, "L1", "hq")
    assert decide_unbind(None, "L1", "hq") is False
    assert decide_unbind(local, "L1", "local") is True
    for label, sku in (("bad label", "A"), ("L1", "sku with spaces"), ("", "A")):
        with pytest.raises(CommandRefusedError):
            decide_bind(None, label, sku, "hq")


async def test_bind_unbind_report_every_change(tmp_path: Path) -> None:
    async with bindings(tmp_path) as (book, outbox):
        await book.bind("L1", "A", "hq")
        await book.bind("L2", "A", "hq")  # one SKU on many labels
        await book.bind("L1", "A", "hq")  # a redelivered command: nothing new
        with pytest.raises(CommandRefusedError):
            await book.bind("L1", "B", "hq")
        assert [(b.label, b.sku) for b in await book.listing("A")] == [("L1", "A"), ("L2", "A")]
        await book.bind("L1", "A", "local")  # a technician claims it
        with pytest.raises(CommandRefusedError):
            await book.unbind("L1", "hq")
        removed = await book.unbind("L1", "local")
        assert removed is not None
        assert removed.sku == "A"
        assert await book.unbind("L1", "local") is None
        assert await book.get("L1") is None
        events = await outbox.read("receipts", after_seq=0, max_events=100, max_bytes=10**9)
        assert [(e.type, json.loads(e.body)) for e in events] == [
            ("label.bound", {"label": "L1", "sku": "A", "source": "hq"}),
            ("label.bound", {"label": "L2", "sku": "A", "source": "hq"}),
            ("label.bound", {"label": "L1", "sku": "A", "source": "local"}),
            ("label.unbound", {"label": "L1", "sku": "A", "source": "local"}),
        ]
        for event in events:
            validate_event(event.wire())
