"""How an append is cut into rows: at most _BATCH_MAX_EVENTS events and _BATCH_MAX_CHARS
accounted bytes each, greedy, an oversized event alone — checked against the plain
event-by-event definition."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.store.outbox import _BATCH_MAX_CHARS, _BATCH_MAX_EVENTS, _ROW_OVERHEAD, _chunks


def rows_one_by_one(texts: list[str]) -> list[tuple[list[str], int]]:
    """The definition: fill a row event by event until the next one would not fit."""
    rows: list[tuple[list[str], int]] = []
    chunk: list[str] = []
    size = _ROW_OVERHEAD
    for text in texts:
        cost = len(text) + 1
        if chunk and (len(chunk) == _BATCH_MAX_EVENTS or size + cost > _BATCH_MAX_CHARS):
            rows.append((chunk, size))
            chunk, size = [], _ROW_OVERHEAD
        chunk.append(text)
        size += cost
    if chunk:
        rows.append((chunk, size))
    return rows


lengths = st.one_of(
    st.integers(0, 400),  # typical events
    st.integers(_BATCH_MAX_CHARS // 3, _BATCH_MAX_CHARS + 200),  # near and beyond a row
)


@settings(max_examples=60, deadline=None)
@given(st.lists(lengths, min_size=1, max_size=1500))
def test_rows_are_cut_as_the_definition_says(sizes: list[int]) -> None:
    texts = ["x" * size for size in sizes]
    assert _chunks(texts) == rows_one_by_one(texts)


def test_thousands_of_small_events_fill_rows_to_the_event_limit() -> None:
    texts = [f'{{"n":{n}}}' for n in range(5 * _BATCH_MAX_EVENTS + 7)]
    rows = _chunks(texts)
    assert [len(chunk) for chunk, _ in rows] == [_BATCH_MAX_EVENTS] * 5 + [7]
    assert [text for chunk, _ in rows for text in chunk] == texts
    assert rows == rows_one_by_one(texts)


def test_an_event_larger_than_a_row_gets_a_row_of_its_own() -> None:
    texts = ["a", "b" * (_BATCH_MAX_CHARS + 10), "c"]
    assert [chunk for chunk, _ in _chunks(texts)] == [["a"], [texts[1]], ["c"]]
