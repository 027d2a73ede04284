"""HQ's sans-IO intake: reading envelopes, the per-key ledger, acks. No database, no broker."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.hq.intake import (
    MAX_RANGES,
    EventRow,
    Ledger,
    ack_for,
    envelope_origin,
    read_envelope,
)
from tests.hq.support import envelope, expired_marker, with_events


def _rows(seqs: list[int], prefix: str = "id") -> list[EventRow]:
    return [
        EventRow.of({"seq": n, "id": f"{prefix}{n}", "ts": "t", "type": "x"}) for n in sorted(seqs)
    ]


def test_read_envelope_gives_the_key_and_whole_events_in_seq_order() -> None:
    read = read_envelope(with_events(envelope([1]), json.loads(envelope([3, 2]))["events"]))
    assert read.key == ("s1", "stock", "e1")
    assert [row.seq for row in read.events] == [2, 3]
    assert json.loads(read.events[0].event) == read.events[0].event_object
    assert read.events[0].event_object["n"] == 2


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"[]", "should be an object"),
        (envelope([1]).replace(b'"n": 1', b'"n": NaN'), "not strict JSON"),
        (envelope([1]).replace(b'"n": 1', b'"n": "\\u0000"'), "NUL"),
        (envelope([1]).replace(b'"n": 1', b'"n": "\\udc00"'), "surrogate"),
        (envelope([1]).replace(b'"e1"', b'"e\\u0000"'), "NUL"),
    ],
)
def test_garbage_envelopes_raise_value_error_with_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        read_envelope(payload)


def test_an_expiry_marker_lets_the_watermark_pass_the_seqs_it_stands_for() -> None:
    ledger = Ledger()
    ledger.take(_rows([1, 2]))
    marker = EventRow.of(expired_marker(10, 3, 8))
    taken = ledger.take([marker])
    assert (ledger.watermark, taken.expired, taken.markers) == (10, 8, [marker])
    assert ledger.take([marker]).expired == 0  # again: held, nothing new
    malformed = EventRow.of({**expired_marker(12, 13, 1)})  # from_seq beyond its own seq
    assert malformed.covers_from is None
    ledger.take([malformed])
    assert ledger.watermark == 10


def test_repeated_seqs_are_returned_for_the_conflict_check() -> None:
    ledger = Ledger()
    ledger.take(_rows([1, 2, 3]))
    taken = ledger.take(_rows([2, 3, 4], prefix="other"))
    assert [row.seq for row in taken.fresh] == [4]
    assert [(row.seq, row.id) for row in taken.repeated] == [(2, "other2"), (3, "other3")]


def test_ack_for_is_the_down_ack_message() -> None:
    ack = ack_for("retail/v1/", ("s1", "stock", "e1"), 41)
    assert ack.topic == "retail/v1/s1/down/ack"
    assert json.loads(ack.payload) == {"stream": "stock", "epoch": "e1", "seq": 41}


@given(
    order=st.permutations(list(range(12))),
    repeats=st.lists(st.integers(0, 11), max_size=8),
    split=st.integers(1, 11),
)
def test_any_arrival_order_stores_each_seq_once_and_ends_contiguous(
    order: list[int], repeats: list[int], split: int
) -> None:
    """Twelve envelopes of five seqs, in any order, some twice, through two ledgers loaded from
    each other's state (two consumers sharing the ledger row): each seq is new exactly once and
    the watermark never passes a seq not accounted for."""
    chunks = [list(range(5 * n + 1, 5 * n + 6)) for n in range(12)]
    deliveries = [chunks[n] for n in order] + [chunks[n] for n in repeats]
    ledger = Ledger()
    seen: list[int] = []
    for index, seqs in enumerate(deliveries):
        if index == split:  # another consumer takes over from the committed state
            ledger = Ledger(ledger.watermark, list(ledger.stored), list(ledger.expired))
        seen.extend(row.seq for row in ledger.take(_rows(seqs)).fresh)
        assert all(seq in seen for seq in range(1, ledger.watermark + 1))
    assert sorted(seen) == list(range(1, 61))
    assert (ledger.watermark, ledger.stored, ledger.expired) == (60, [], [])


@pytest.mark.parametrize(
    ("topic", "origin"),
    [
        ("retail/v1/s1/up/stock", ("s1", "stock")),
        ("retail/v1/s1/up/health", None),
        ("retail/v1/s1/up/sync", None),
        ("retail/v1/s1/up/reply/ab12", None),
        ("retail/v1/s1/down/ack", None),
        ("retail/v1//up/stock", None),
        ("other/s1/up/stock", None),
    ],
)
def test_the_origin_of_an_envelope_is_its_topics_store_and_stream(
    topic: str, origin: tuple[str, str] | None
) -> None:
    assert envelope_origin(topic, "retail/v1/") == origin


def test_an_envelope_speaking_for_another_store_or_stream_is_garbage() -> None:
    with pytest.raises(ValueError, match="envelope of s2/stock came on the topic of s1/stock"):
        read_envelope(envelope([1], store="s2"), ("s1", "stock"))
    with pytest.raises(ValueError, match="s1/alerts came on the topic of s1/stock"):
        read_envelope(envelope([1], stream="alerts"), ("s1", "stock"))
    assert read_envelope(envelope([1]), ("s1", "stock")).key == ("s1", "stock", "e1")


def test_holes_above_the_watermark_are_bounded_and_what_waits_comes_again() -> None:
    """Every other seq (a bug, or a hostile store): each event would open a range of its own
    above the watermark, read and written back with every batch of its key. Past
    MAX_RANGES the events that would open another one wait — not stored, so not acked:
    the store sends them again once the holes below are filled."""
    ledger = Ledger()
    evens = list(range(2, 2 * MAX_RANGES + 202, 2))
    taken = ledger.take(_rows(evens))
    held = len(ledger.stored)
    assert MAX_RANGES - 2 <= held <= MAX_RANGES
    assert [row.seq for row in taken.fresh] == evens[:held]
    assert [row.seq for row in taken.deferred] == evens[held:]
    assert ledger.first_gap() == (1, 1)
    # A seq that joins a range held, or the watermark, never waits.
    joining = [1, 3, evens[held - 1] + 1]
    assert [row.seq for row in ledger.take(_rows(joining)).fresh] == joining
    # The store re-sends everything above the watermark, in order: all of it is taken.
    rest = list(range(ledger.watermark + 1, 2 * MAX_RANGES + 201))
    taken = ledger.take(_rows(rest))
    assert taken.deferred == []
    assert (ledger.watermark, ledger.stored) == (2 * MAX_RANGES + 200, [])
