"""The stock producers build their events trusted (``EventBody.trusted``: no value checks at
run time): every event the slot counter can lead them to make must be one the schema describes,
and the same event, to the byte, as the validated one.

The counter is driven with any configured slot (ids and SKUs as the config admits them, any
unit weight, tare and gain) through any sequence of levels, motion and faults; every
``stock.changed`` and ``stock.ambiguous`` it leads to is checked against the model, the
contract's source (tests/wire/test_schema_doc.py ties the documented schema to it)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.drivers.contracts import ScaleStatus
from gateway.shelves.config import SKU_PATTERN, SLOT_NAME_PATTERN
from gateway.shelves.service import stock_ambiguous, stock_changed
from gateway.shelves.slot_counter import (
    CounterSettings,
    SlotCounter,
    SlotSpec,
    StockAmbiguous,
    StockChange,
)
from gateway.wire import StockAmbiguous as AmbiguousEvent
from gateway.wire import StockChanged
from gateway.wire.encoding import encode_events
from gateway.wire.envelope import EventBody, check_trusted_events

# A segment: how long a level is held, in items (None: no weight) and a fraction of an item
# off a whole number, what the device says of stability, and its status (mostly OK).
_SEGMENTS = st.lists(
    st.tuples(
        st.floats(min_value=0.5, max_value=25.0),
        st.one_of(st.none(), st.integers(min_value=-2, max_value=200)),
        st.one_of(st.just(0.0), st.floats(min_value=-0.5, max_value=0.5)),
        st.sampled_from([True, True, False, None]),
        st.one_of(st.just(ScaleStatus.OK), st.sampled_from(list(ScaleStatus))),
    ),
    min_size=2,
    max_size=10,
)
_SPECS = st.builds(
    SlotSpec,
    slot=st.from_regex(SLOT_NAME_PATTERN, fullmatch=True),
    sku=st.from_regex(SKU_PATTERN, fullmatch=True),
    unit_grams=st.floats(min_value=0.5, max_value=5_000.0),
    tolerance=st.floats(min_value=0.05, max_value=0.45),
    tare_grams=st.floats(min_value=-1_000.0, max_value=5_000.0),
    gain=st.one_of(st.just(1.0), st.floats(min_value=0.5, max_value=2.0)),
    min_count=st.integers(min_value=0, max_value=50),
)


def _the_validated_one(event: EventBody) -> None:
    model = type(event)
    fields = dict(event.__dict__)
    validated = model.validated(fields)  # raises what the schema does not describe
    assert validated == event
    assert encode_events([event]) == encode_events([validated])


@settings(max_examples=80)
@given(spec=_SPECS, segments=_SEGMENTS)
def test_every_stock_event_the_counter_leads_to_is_described(
    spec: SlotSpec,
    segments: list[tuple[float, int | None, float, bool | None, ScaleStatus]],
) -> None:
    check_trusted_events(False)  # the run-time path itself: built without checks
    try:
        counter = SlotCounter(spec, CounterSettings())
        t, next_tick, flip = 0.0, 1.0, 0.4
        for seconds, items, off, stable, status in segments:
            grams = None if items is None else spec.tare_grams + (items + off) * spec.unit_grams
            end = t + seconds
            while t < end:
                t = round(t + 0.1, 6)
                flip = -flip
                raw = None if grams is None else grams + flip
                outputs = list(counter.observe(t, raw, stable, status))
                if t >= next_tick:
                    outputs += counter.tick(t)
                    next_tick += 1.0
                for output in outputs:
                    if isinstance(output, StockChange):
                        event: EventBody = stock_changed(output)
                    elif isinstance(output, StockAmbiguous):
                        event = stock_ambiguous(output)
                    else:
                        continue
                    assert type(event) in (StockChanged, AmbiguousEvent)
                    _the_validated_one(event)
    finally:
        check_trusted_events(True)
