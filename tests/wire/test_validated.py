"""``EventBody.validated`` (the producers' fast way to build an event) checks exactly what the
model's constructor checks: same event, same bytes on the wire, same errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway.clock import FakeClock
from gateway.store import Database
from gateway.store.outbox import Outbox
from gateway.wire import EVENT_TYPES, EventBody, StockChanged, TrustedEvents
from gateway.wire.encoding import encode_events
from gateway.wire.envelope import check_trusted_events
from gateway.wire.registry import model_examples


def _outcome(build: Any) -> tuple[str, Any]:
    try:
        event = build()
    except ValidationError as error:
        return "refused", error.errors(include_url=False)
    return "built", (type(event), event.__dict__, event.model_fields_set, encode_events([event]))


def _same_as_constructor(model: type[EventBody], fields: dict[str, Any]) -> None:
    assert _outcome(lambda: model.validated(fields)) == _outcome(lambda: model(**fields))


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
def test_every_documented_example_builds_alike(name: str) -> None:
    model = EVENT_TYPES[name]
    examples = model_examples(model)
    assert examples
    for example in examples:
        _same_as_constructor(model, example)
        # Garbage: a missing field, an unknown one, a value of the wrong JSON type.
        for field in example:
            _same_as_constructor(model, {k: v for k, v in example.items() if k != field})
            _same_as_constructor(model, {**example, field: object()})
            _same_as_constructor(model, {**example, field: str(example[field])})
        _same_as_constructor(model, {**example, "undescribed": 1})


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=70),
    st.sampled_from(["pick", "put", "recount", "", "x" * 64, "x" * 65, "é\x7f\U0001f600"]),
    st.sampled_from([0, -1, 1, 0.0, -0.0, 1.0, 1.5, 2**63, True]),
)


@given(st.fixed_dictionaries(dict.fromkeys(StockChanged.model_fields, _VALUES)))
def test_stock_changed_builds_alike_for_any_values(fields: dict[str, Any]) -> None:
    _same_as_constructor(StockChanged, fields)


def test_a_subclass_gets_its_own_model() -> None:
    [example] = model_examples(StockChanged)
    assert type(StockChanged.validated(example)) is StockChanged


_COUNTS = st.one_of(st.none(), st.integers(min_value=-1, max_value=2**64))
_NEARLY_VALID = st.fixed_dictionaries(
    {
        "slot": st.text(max_size=65),
        "sku": st.text(max_size=65),
        "kind": st.sampled_from(["pick", "put", "recount", "Pick"]),
        "before": _COUNTS,
        "after": _COUNTS,
        "delta": _COUNTS,
        "confidence": st.floats(min_value=-0.1, max_value=1.1) | st.sampled_from([0, 1, -0.0]),
        "grams": st.floats(allow_nan=True, allow_infinity=True),
    }
)


@given(_NEARLY_VALID)
def test_stock_changed_builds_alike_at_the_edges(fields: dict[str, Any]) -> None:
    _same_as_constructor(StockChanged, fields)


# --- trusted: built without checking the values ---------------------------------------------


@pytest.fixture
def unchecked() -> Iterator[None]:
    """``EventBody.trusted`` as it runs in production (the suite validates it otherwise)."""
    check_trusted_events(False)
    yield
    check_trusted_events(True)


@pytest.mark.usefixtures("unchecked")
@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
def test_a_trusted_event_is_the_validated_one(name: str) -> None:
    model = EVENT_TYPES[name]
    for example in model_examples(model):
        validated = model.validated(example)
        fields = dict(validated.__dict__)  # every field, in order
        for trusted in (model.trusted(dict(fields)), model.trusted_many([dict(fields)])[0]):
            assert type(trusted) is model
            assert trusted == validated
            assert trusted.model_fields_set == set(model.model_fields)
            assert encode_events([trusted]) == encode_events([validated])
            assert trusted.model_dump() == validated.model_dump()


@pytest.mark.usefixtures("unchecked")
def test_trusted_checks_the_names_not_the_values() -> None:
    [example] = model_examples(StockChanged)
    fields = dict(StockChanged.validated(example).__dict__)
    # A value out of the schema passes: the producer's tests are what check it.
    assert StockChanged.trusted({**fields, "before": -5}).before == -5
    # A field missing or unknown: refused as validation refuses it.
    for wrong in ({k: v for k, v in fields.items() if k != "sku"}, {**fields, "extra": 1}):
        with pytest.raises(ValidationError) as trusted_error:
            StockChanged.trusted(dict(wrong))
        assert _outcome(lambda w=wrong: StockChanged.validated(w)) == (  # type: ignore[misc]
            "refused",
            trusted_error.value.errors(include_url=False),
        )
        with pytest.raises(ValidationError):
            StockChanged.trusted_many([dict(fields), dict(wrong)])
    # Other order: validated, so the wire keeps the declared order.
    shuffled = dict(reversed(list(fields.items())))
    assert list(StockChanged.trusted(shuffled).__dict__) == list(fields)
    assert [list(e.__dict__) for e in StockChanged.trusted_many([shuffled])] == [list(fields)]


def test_trusted_validates_in_full_under_the_suites_switch() -> None:
    [example] = model_examples(StockChanged)
    fields = dict(StockChanged.validated(example).__dict__)
    with pytest.raises(ValidationError):
        StockChanged.trusted({**fields, "before": -5})
    with pytest.raises(ValidationError):
        StockChanged.trusted_many([{**fields, "confidence": 2.0}])


@pytest.mark.usefixtures("unchecked")
def test_a_trusted_event_stays_as_built() -> None:
    [example] = model_examples(StockChanged)
    event = StockChanged.trusted(dict(StockChanged.validated(example).__dict__))
    shared = event.model_fields_set
    event.after = 3  # pydantic's own API never changes the shared fields-set
    copied = event.model_copy(update={"before": 4})
    assert event.model_fields_set == shared == set(StockChanged.model_fields)
    assert copied.before == 4
    assert event.before == example["before"]


@pytest.mark.usefixtures("unchecked")
@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
async def test_a_trusted_batch_is_stored_as_its_validated_events(name: str, tmp_path: Path) -> None:
    model = EVENT_TYPES[name]
    validated = [model.validated(example) for example in model_examples(model)] * 3
    batch = model.trusted_many([dict(event.__dict__) for event in validated])
    assert isinstance(batch, TrustedEvents)
    assert list(batch) == validated
    assert list(batch[1:]) == validated[1:]
    clock = FakeClock()
    async with Database.running(tmp_path / "g.db", clock=clock) as db:
        outbox = Outbox(db, clock)
        await outbox.open(("s",))
        await outbox.append_many("s", validated)
        await outbox.append_many("s", batch)
        await outbox.append_many("s", model.trusted_many([]))  # nothing
        stored = await outbox.read("s", after_seq=0, max_events=100, max_bytes=10**9)
    assert {event.type for event in stored} == {name}
    bodies = [event.body for event in stored]
    assert bodies == bodies[: len(validated)] * 2


@pytest.mark.usefixtures("unchecked")
async def test_a_trusted_batch_of_a_type_not_in_the_contract_is_refused(tmp_path: Path) -> None:
    class Undescribed(EventBody):
        n: int

    clock = FakeClock()
    async with Database.running(tmp_path / "g.db", clock=clock) as db:
        outbox = Outbox(db, clock)
        await outbox.open(("s",))
        with pytest.raises(TypeError, match="not an event type"):
            outbox.append_many("s", Undescribed.trusted_many([{"n": 1}]))
