"""Label bindings: one SKU per label, HQ wins unless overridden locally, every change reported."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from gateway.clock import FakeClock
from gateway.errors import CommandRefusedError
from gateway.labels.bindings import Binding, LabelBindings, decide_bind, decide_unbind
from gateway.store import Database
from gateway.store.outbox import Outbox
from gateway.wire import validate_event


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


def test_seed_rules() -> None:
    seed = Binding("L1", "A", "seed", local_override=False, updated_at="t")
    hq = Binding("L1", "A", "hq", local_override=False, updated_at="t")
    local = Binding("L1", "A", "local", local_override=True, updated_at="t")
    assert decide_bind(seed, "L1", "B", "seed") is True  # a newer seed file re-points
    assert decide_bind(seed, "L1", "A", "seed") is False
    assert decide_bind(seed, "L1", "B", "hq") is True  # HQ wins over the seed
    assert decide_bind(seed, "L1", "A", "hq") is True  # ... and takes it over
    assert decide_bind(hq, "L1", "A", "seed") is False
    with pytest.raises(CommandRefusedError, match="bound by HQ"):
        decide_bind(hq, "L1", "B", "seed")
    with pytest.raises(CommandRefusedError, match="bound locally"):
        decide_bind(local, "L1", "B", "seed")
    with pytest.raises(CommandRefusedError, match="unbind it before"):
        decide_bind(seed, "L1", "B", "local")  # a technician unbinds first, as always


async def test_a_seed_file_binds_what_nobody_else_bound(tmp_path: Path) -> None:
    from gateway.labels.bindings import read_binding_seed

    async with bindings(tmp_path) as (book, outbox):
        await book.bind("L2", "X", "hq")
        await book.bind("L3", "Y", "local")
        rows = read_binding_seed("label,sku,shelf\nL1,A,aisle 4\nL2,B,aisle 4\nL3,C,\nL4,A,\n")
        result = await book.seed(rows)
        assert (result.bound, result.unchanged) == (2, 0)
        assert [s["label"] for s in result.skipped] == ["L2", "L3"]
        again = await book.seed(read_binding_seed('[{"label": "L1", "sku": "A"}]'))
        assert (again.bound, again.unchanged, again.skipped) == (0, 1, [])
        newer = await book.seed([("L4", "D")])  # the planogram changed
        assert newer.bound == 1
        assert {(b.label, b.sku, b.source) for b in await book.listing()} == {
            ("L1", "A", "seed"),
            ("L2", "X", "hq"),
            ("L3", "Y", "local"),
            ("L4", "D", "seed"),
        }
        await book.bind("L1", "E", "hq")  # HQ re-points a seeded label
        assert (await book.get("L1")) == Binding(
            "L1", "E", "hq", False, "2026-11-23T09:00:00.000+00:00"
        )
        events = await outbox.read("receipts", after_seq=0, max_events=100, max_bytes=10**9)
        seeded = [json.loads(e.body) for e in events if json.loads(e.body)["source"] == "seed"]
        assert [(e["label"], e["sku"]) for e in seeded] == [("L1", "A"), ("L4", "A"), ("L4", "D")]
        for event in events:
            validate_event(event.wire())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("label\nL1\n", "header row"),
        ("", "header row"),
        ("label,sku\nbad label,A\n", "row 1.*not a label id"),
        ("label,sku\nL1,\n", "row 1.*not a SKU"),
        ("label,sku\nL1,A\nL1,B\n", "row 2.*already listed with A"),
        ('{"label": "L1"}', "a list"),
        ('["L1"]', "row 1: not an object"),
        ("label,sku\nL1,A\nL 2,B\nL3,\n", "row 2.*\n.*row 3"),
    ],
)
def test_garbage_seed_files_are_refused_with_every_bad_row(text: str, expected: str) -> None:
    from gateway.labels.bindings import read_binding_seed

    with pytest.raises(ValueError, match=expected):
        read_binding_seed(text)
