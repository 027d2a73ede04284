"""Encoding: event bodies as the standard encoder has them, ASCII-only, NaN-free."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.alerts import Alert, AlertChange, Severity
from gateway.shelves.service import stock_changed
from gateway.shelves.slot_counter import ChangeKind, StockChange
from gateway.wire import EVENT_TYPES, HealthSnapshot
from gateway.wire.encoding import encode_bodies, encode_events, encode_message
from gateway.wire.schema_doc import documented_examples

_JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)  # beyond 64 bits: the fallback
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
_JSON_VALUES = st.recursive(
    _JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(st.lists(st.dictionaries(st.text(), _JSON_VALUES, max_size=6), max_size=5))
def test_bodies_encode_to_the_standard_encoders_json(bodies: list[dict[str, Any]]) -> None:
    encoded = encode_bodies(iter(bodies))  # a generator is read once
    assert len(encoded) == len(bodies)
    for text, body in zip(encoded, bodies, strict=True):
        assert text.isascii()  # sizes in characters are sizes in bytes
        assert "\n" not in text  # the row separator
        assert json.loads(text) == body
        if not _has_float(body):  # floats may be spelt otherwise (1e-05 or 0.00001): same value
            assert text == json.dumps(body, separators=(",", ":"))


def _has_float(value: object) -> bool:
    if isinstance(value, dict):
        return any(_has_float(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_float(item) for item in value)
    return isinstance(value, float)


def test_bodies_the_fast_encoder_does_not_take_fall_back_to_the_standard_one() -> None:
    moment = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

    class Point(NamedTuple):
        x: int
        y: int

    class Grams(float):
        pass

    class Colour(Enum):
        RED = "red"

    class Pairs(dict[str, Any]):
        def items(self) -> Any:  # what the standard encoder reads a dict subclass by
            return [("only", "this")]

    bodies = [
        {"big": 2**64, "slot": "s-1"},  # orjson: integer exceeds 64-bit range
        {"name": "Crème brûlée 🍮"},  # escaped, as ensure_ascii has it
        {1: "one", None: "none"},  # non-string keys become strings
        {"at": moment, "where": Path("/x")},  # str(), not orjson's own datetime format
        {"ratio": float("nan"), "top": float("inf")},
        {"at": Point(1, 2), "weight": Grams(1.5), "colour": Colour.RED},
        Pairs(a=1),
        {"name": "é", "ratio": float("nan"), "big": 2**70},  # both paths: still null
    ]
    assert encode_bodies(bodies) == [
        '{"big":18446744073709551616,"slot":"s-1"}',
        '{"name":"Cr\\u00e8me br\\u00fbl\\u00e9e \\ud83c\\udf6e"}',
        '{"1":"one","null":"none"}',
        '{"at":"2026-11-23 09:00:00+00:00","where":"/x"}',
        '{"ratio":null,"top":null}',  # not the invalid JSON `NaN`, `Infinity`
        '{"at":[1,2],"weight":1.5,"colour":"red"}',
        '{"only":"this"}',
        '{"name":"\\u00e9","ratio":null,"big":1180591620717411303424}',
    ]


# --- producers' models encode to the bytes their plain dicts did ----------------------------

_AT = "2026-11-23T09:00:00.120+00:00"
_LABEL = {"label": "0000021F3A4B", "sku": "4006381333931", "price_version": 42}
_JOB = {**_LABEL, "content_hash": "9b1c0e5f"}


def _alert(**more: Any) -> dict[str, Any]:
    details = {"left": 3, "név": "é 🧀", "at": str(datetime(2026, 11, 23, 9, tzinfo=UTC))}
    return {
        "key": "stock.low:slot-12",
        "severity": "warning",
        "message": "Crème: 3 left",
        "raised_at": _AT,
        "updated_at": _AT,
        "details": details,
        **more,
    }


#: (type, the dict a producer built before it built the model)
_PREVIOUS_FORMS: list[tuple[str, dict[str, Any]]] = [
    ("alert.raised", _alert()),
    ("alert.cleared", _alert(cleared_at=_AT, clear_message="restocked")),
    ("alert.cleared", _alert(cleared_at=_AT)),  # nothing said: no clear_message at all
    (
        "outbox.expired",
        {"from_seq": 37, "count": 7, "reason": "ttl", "oldest_ts": _AT, "newest_ts": _AT},
    ),
    ("price.stored", {"version": 42, "kind": "delta", "parts": 3}),
    (
        "price.applied",
        {
            "version": 42,
            "kind": "full",
            "parts": 1,
            "items": 120,
            "deleted": 0,
            "promotions": 1,
            "cancelled_promotions": 0,
            "superseded": [40, 41],
        },
    ),
    (
        "price.rejected",
        {
            "version": 43,
            "reason": "invalid batch",
            "problems": [
                {"item": "4006381333931", "reason": "price: bad"},
                {"item": 3, "reason": "x"},
            ],
        },
    ),
    ("label.bound", {"label": "L1", "sku": "S1", "source": "seed"}),
    ("label.unbound", {"label": "L1", "sku": "S1", "source": "local"}),
    ("label.queued", {**_JOB, "queued_at": _AT}),
    ("label.queued", {**_JOB, "queued_at": _AT, "reason": "drifted: re-push"}),
    ("label.confirmed", {**_JOB, "confirmed_at": _AT, "evidence": "sim: ok", "unchanged": True}),
    ("label.failed", {**_JOB, "failed_at": _AT, "reason": "timeout", "permanent": False}),
    ("label.superseded", {**_JOB, "superseded_at": _AT, "reason": "new price version"}),
    ("label.expired", {**_LABEL, "content_hash": None, "expired_at": _AT, "reason": "late"}),
    (
        "stock.changed",
        {
            "slot": "aisle3-2-l",
            "sku": "4006381333931",
            "kind": "recount",
            "before": None,
            "after": 7,
            "delta": None,
            "confidence": 0.5,
            "grams": 1759.3,
        },
    ),
    (
        "stock.ambiguous",
        {
            "slot": "s",
            "sku": "A",
            "grams": -376.2,
            "ratio": -1.505,
            "candidates": [],
            "count_before": None,
        },
    ),
    (
        "stock.activity",
        {
            "start": _AT,
            "end": _AT,
            "slots": [
                {
                    "slot": "s",
                    "sku": "A",
                    "picks": 5,
                    "picked_items": 6,
                    "puts": 2,
                    "put_items": 2,
                    "ambiguous": 0,
                }
            ],
        },
    ),
    # Dwell types were born typed: their dict form is what protocol.md documents.
    ("zone.enter", {"tag": "cart-1", "zone": "produce", "entered_at": _AT}),
    (
        "zone.exit",
        {
            "tag": "cart-1",
            "zone": "produce",
            "entered_at": _AT,
            "exited_at": _AT,
            "dwell_s": 72.36,
            "sightings": 61,
        },
    ),
    (
        "zone.aggregate",
        {
            "zone": "produce",
            "start": _AT,
            "end": _AT,
            "visits": 0,
            "dwell_median_s": None,
            "dwell_p90_s": None,
            "peak_occupancy": 2,
        },
    ),
]


@pytest.mark.parametrize(
    ("event_type", "previous"), _PREVIOUS_FORMS, ids=[t for t, _ in _PREVIOUS_FORMS]
)
def test_a_model_encodes_to_the_bytes_of_its_previous_dict(
    event_type: str, previous: dict[str, Any]
) -> None:
    model = EVENT_TYPES[event_type](**previous)
    assert encode_bodies([model]) == encode_bodies([previous])
    assert encode_events([model, model]) == encode_bodies([previous, previous])  # the outbox's


def test_every_event_type_has_a_previous_form_compared() -> None:
    assert {event_type for event_type, _ in _PREVIOUS_FORMS} == set(EVENT_TYPES)


def test_the_producers_own_builders_encode_as_before() -> None:
    change = StockChange("s-1", "A", ChangeKind.PICK, 3, 2, -1, 0.998, -200.1, 12.0)
    [text] = encode_bodies([stock_changed(change)])
    assert text == (
        '{"slot":"s-1","sku":"A","kind":"pick","before":3,"after":2,"delta":-1,'
        '"confidence":0.998,"grams":-200.1}'
    )
    moment = datetime(2026, 11, 23, 9, tzinfo=UTC)
    alert = Alert("k", Severity.CRITICAL, "é", moment, moment, {"n": 1})
    [text] = encode_bodies([AlertChange("alert.cleared", alert, cleared_at=moment).event()])
    at = "2026-11-23T09:00:00.000+00:00"
    assert text == (
        f'{{"key":"k","severity":"critical","message":"\\u00e9","raised_at":"{at}",'
        f'"updated_at":"{at}","details":{{"n":1}},"cleared_at":"{at}"}}'
    )


def test_the_health_snapshot_encodes_as_its_dict_did() -> None:
    [(_, _, example)] = [e for e in documented_examples() if e[1] is HealthSnapshot]
    previous = json.dumps(example, separators=(",", ":"), default=str).encode()
    assert encode_message(HealthSnapshot.model_validate(example)) == previous
