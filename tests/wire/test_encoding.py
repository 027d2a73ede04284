"""Encoding: event bodies as the standard encoder has them, ASCII-only, NaN-free."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any, NamedTuple

from hypothesis import given
from hypothesis import strategies as st

from gateway.wire.encoding import encode_bodies

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
