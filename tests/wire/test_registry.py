"""The registry is the contract: the outbox takes its models only, the docs describe each."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from pathlib import Path
from typing import get_type_hints

import pytest

from gateway.clock import FakeClock
from gateway.store import Database
from gateway.store.outbox import Outbox
from gateway.wire import (
    EVENT_TYPES,
    WIRE_EVENTS,
    EventBody,
    EventCatalogue,
    HealthSnapshot,
    StockAmbiguous,
    StockChanged,
)
from gateway.wire.schema_doc import documented_examples
from tests.store.probes import PROBES, probe
from tests.wire.documented import event_validators, sent_events

CHANGE = StockChanged(
    slot="s-1", sku="A", kind="pick", before=3, after=2, delta=-1, confidence=1.0, grams=-200.1
)


def test_the_schema_doc_documents_exactly_the_registered_event_types() -> None:
    assert set(event_validators()) == set(EVENT_TYPES)


def test_every_registered_model_is_an_event_body_of_its_own() -> None:
    models = list(EVENT_TYPES.values())
    assert len(set(models)) == len(models)  # one type name per model
    assert all(issubclass(model, EventBody) for model in models)
    assert all(model in WIRE_EVENTS for model in models)
    with pytest.raises(ValueError, match="is both"):
        EventCatalogue({"stock.changed": StockChanged}, {"stock.counted": StockChanged})


def test_appends_are_typed_to_wire_models() -> None:
    # mypy --strict (make typecheck) holds every producer to these annotations.
    assert get_type_hints(Outbox.append)["event"] is EventBody
    for method in (Outbox.append_many, Outbox.append_atomic):
        assert get_type_hints(method)["events"] == Iterable[EventBody]
    assert inspect.signature(Outbox).parameters["events"].default is WIRE_EVENTS


class Unregistered(EventBody):
    n: int


class Lookalike(StockChanged):
    """A subclass of a registered model is not that model."""


async def test_the_outbox_refuses_anything_but_a_registered_wire_model(tmp_path: Path) -> None:
    clock = FakeClock()
    async with Database.running(tmp_path / "g.db", clock=clock) as db:
        outbox = Outbox(db, clock)
        await outbox.open(("stock", "receipts"))
        [(_, _, health)] = [e for e in documented_examples() if e[1] is HealthSnapshot]
        refused: list[object] = [
            CHANGE.model_dump(),  # the plain dict producers used to build
            Unregistered(n=1),
            Lookalike(**CHANGE.model_dump()),
            HealthSnapshot.model_validate(health),  # a wire model, but no event
            probe("stock.changed", n=1),  # a test event: only for outboxes that take them
        ]
        for event in refused:
            with pytest.raises(TypeError, match="is not an event type of this outbox"):
                outbox.append("stock", event)  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                outbox.append_atomic(
                    "stock",
                    [event],  # type: ignore[list-item]
                    before=[("INSERT INTO meta (key, value) VALUES ('x', 'y')", ())],
                )
        ambiguous = StockAmbiguous(
            slot="s-1", sku="A", grams=-30.0, ratio=-0.15, candidates=[], count_before=3
        )
        with pytest.raises(TypeError, match="alone"):
            outbox.append_many("stock", [CHANGE, ambiguous])
        await outbox.append_many("stock", [CHANGE, CHANGE])
        assert await db.fetchall("SELECT * FROM meta WHERE key = 'x'") == []  # never committed
        events = await sent_events(outbox)
    assert [event["type"] for event in events] == ["stock.changed", "stock.changed"]


async def test_a_generator_is_taken_in_slices_with_the_same_outcome(tmp_path: Path) -> None:
    # Outbox._encode takes a generator 256 events at a time: a stranger after the first
    # slice still refuses the whole append, and the stored bytes are a list's.
    clock = FakeClock()
    changes = [CHANGE.model_copy(update={"before": n}) for n in range(600)]
    ambiguous = StockAmbiguous(
        slot="s-1", sku="A", grams=-30.0, ratio=-0.15, candidates=[], count_before=3
    )
    async with Database.running(tmp_path / "g.db", clock=clock) as db:
        outbox = Outbox(db, clock)
        await outbox.open(("stock",))
        with pytest.raises(TypeError, match="alone"):
            outbox.append_many("stock", (e for e in [*changes[:300], ambiguous, *changes]))
        await outbox.append_many("stock", (change for change in changes))
        await outbox.append_many("stock", changes)
        await outbox.append_many("stock", iter(()))  # nothing: nothing stored
        events = await sent_events(outbox)
    assert len(events) == 1200
    bodies = [{k: v for k, v in e.items() if k not in ("seq", "id")} for e in events]
    assert bodies[:600] == bodies[600:]
    assert [body["before"] for body in bodies[:600]] == list(range(600))


async def test_the_documented_schemas_catch_what_they_do_not_describe(tmp_path: Path) -> None:
    # The checker of tests/wire/test_producers.py is not vacuous.
    clock = FakeClock()
    async with Database.running(tmp_path / "g.db", clock=clock) as db:
        outbox = Outbox(db, clock, events=PROBES)
        await outbox.open(("stock", "dwell"))
        await outbox.append("dwell", probe("dwell.visit", zone="z"))
        with pytest.raises(AssertionError, match=r"dwell\.visit is not in docs/protocol\.md"):
            await sent_events(outbox)
        await (await outbox.acknowledge("dwell", outbox.epoch, 1))  # type: ignore[misc]
        unchecked = StockChanged.model_construct(**{**CHANGE.model_dump(), "confidence": 2.0})
        await outbox.append("stock", unchecked)
        with pytest.raises(AssertionError, match=r"not as documented: 2\.0 is greater"):
            await sent_events(outbox)
