"""``EventBody.validated`` (the producers' fast way to build an event) checks exactly what the
model's constructor checks: same event, same bytes on the wire, same errors."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway.wire import EVENT_TYPES, EventBody, StockChanged
from gateway.wire.encoding import encode_events
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
