"""Reading HQ's messages within bounds, and the account kept of the refused ones."""

from __future__ import annotations

import contextlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.alerts import Alerts, Severity
from gateway.clock import FakeClock
from gateway.errors import MalformedMessageError
from gateway.store import Database
from gateway.store.outbox import Outbox
from gateway.sync.inbound import (
    MALFORMED_ALERT,
    MAX_DEPTH,
    MAX_MESSAGE_BYTES,
    RefusalCounter,
    check_bounds,
    load_json,
    load_json_object,
)
from gateway.sync.uplink import _read_ack


def nested(depth: int, *, arrays: bool = True) -> bytes:
    if arrays:
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


def depth_of(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


@pytest.mark.parametrize("arrays", [True, False])
def test_depth_is_capped_exactly(arrays: bool) -> None:
    assert load_json(nested(MAX_DEPTH, arrays=arrays)) is not None
    with pytest.raises(MalformedMessageError, match=f"nested deeper than {MAX_DEPTH}"):
        load_json(nested(MAX_DEPTH + 1, arrays=arrays))
    with pytest.raises(MalformedMessageError, match="nested deeper"):
        load_json(nested(100_000, arrays=arrays))  # a RecursionError for json.loads


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"name": "[" * 100 + '\\"{' * 50, "list": [["x"]], "q": '"]]"'})
    assert depth_of(load_json(text.encode())) == 3
    assert load_json(json.dumps(["\\", [["]"]]]).encode()) == ["\\", [["]"]]]


def test_size_is_capped() -> None:
    small_enough = b'"' + b"x" * (MAX_MESSAGE_BYTES - 2) + b'"'
    assert len(load_json(small_enough)) == MAX_MESSAGE_BYTES - 2
    with pytest.raises(MalformedMessageError, match="more than the"):
        check_bounds(small_enough + b" ")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "not JSON"),
        (b"\x00\x01\x02\xff", "not JSON"),
        (b'{"seq": NaN}', "not JSON"),
        (b'{"seq": Infinity}', "not JSON"),
        (b'{"seq": -Infinity}', "not JSON"),
        (b'{"seq": 1e400}', "not JSON"),
        (b'{"seq": -1e400}', "not JSON"),
        (b'{"s": "\xff\xfe"}', "not JSON"),
        (b'{"s": "\\ud800"}', "not JSON"),
        (b"[" * 40, "nested deeper"),
        (b"[1, 2", "not JSON"),
    ],
)
def test_what_is_not_strict_json_is_malformed(payload: bytes, reason: str) -> None:
    with pytest.raises(MalformedMessageError, match=reason):
        load_json(payload)


def test_an_object_is_required_where_one_is_needed() -> None:
    assert load_json_object(b'{"a": [1]}') == {"a": [1]}
    for payload in (b"[]", b"1", b'"text"', b"null"):
        with pytest.raises(MalformedMessageError, match="not a JSON object"):
            load_json_object(payload)


_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.sampled_from('ab"\\[]{}/é\n\u2028'), max_size=8)
)
_documents = st.recursive(
    _leaves,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.text(alphabet=st.sampled_from('k"\\[]{'), max_size=4), children, max_size=3
        )
    ),
    max_leaves=60,
)


@settings(max_examples=300)
@given(document=_documents, limit=st.integers(min_value=0, max_value=12), escaped=st.booleans())
def test_the_depth_check_agrees_with_the_parsed_document(
    document: Any, limit: int, escaped: bool
) -> None:
    payload = json.dumps(document, ensure_ascii=escaped).encode()
    if depth_of(document) > limit:
        with pytest.raises(MalformedMessageError):
            check_bounds(payload, max_depth=limit)
    else:
        check_bounds(payload, max_depth=limit)
        assert load_json(payload, max_depth=limit) == json.loads(payload)


@given(payload=st.binary(max_size=200))
def test_garbage_is_read_or_refused_never_raised(payload: bytes) -> None:
    with contextlib.suppress(MalformedMessageError):
        load_json(payload)


async def test_refusals_keep_their_alert_current_survive_a_restart_and_clear_when_quiet(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    path = tmp_path / "g.db"
    async with Database.running(path, clock=clock) as db:
        outbox = Outbox(db, clock)
        await outbox.open(("alerts",))
        alerts = Alerts(db, outbox, clock)
        await alerts.load()
        counter = RefusalCounter(
            MALFORMED_ALERT, Severity.WARNING, "refused unread", alerts=alerts, clock=clock
        )
        for n in range(10):
            topic = "down/ack" if n % 2 else "down/cmd/+"
            await counter.refuse(f"reason {n}" + "x" * (1000 if n == 9 else 0), topic=topic)
            clock.advance(1)
        [alert] = alerts.active()
        assert alert.details["refused"] == counter.refused == 10
        assert alert.details["by_topic"] == {"down/ack": 5, "down/cmd/+": 5}
        assert str(alert.details["last_reason"]).startswith("reason 9xxx")
        assert len(alert.details["last_reason"]) < 300  # what a sender chose is cut short
        assert alert.message.startswith("refused unread on down/ack: reason 9")
        assert counter.status()["refused"] == 10
    async with Database.running(path, clock=clock) as db:
        outbox = Outbox(db, clock)
        await outbox.open(("alerts",))
        alerts = Alerts(db, outbox, clock)
        await alerts.load()
        counter = RefusalCounter(
            MALFORMED_ALERT, Severity.WARNING, "refused unread", alerts=alerts, clock=clock
        )
        assert counter.refused == 10  # the alert is the record: a restart keeps the count
        await counter.refuse("after the restart", topic="down/ack")
        assert counter.status()["by_topic"] == {"down/ack": 6, "down/cmd/+": 5}
        clock.advance(timedelta(hours=23).total_seconds())
        await counter.expire()
        assert counter.refused == 11  # not quiet long enough
        clock.advance(timedelta(hours=1).total_seconds())
        await counter.expire()
        assert alerts.active() == ()
        assert counter.refused == 0
        events = await outbox.read("alerts", after_seq=0, max_events=10, max_bytes=10**6)
    assert [e.type for e in events] == ["alert.raised", "alert.cleared"]
    cleared = json.loads(events[1].body)
    assert cleared["details"]["refused"] == 11
    assert "11 refused in all" in cleared["clear_message"]


@given(
    payload=st.binary(max_size=100)
    | st.builds(
        lambda seq: b'{"stream":"stock","epoch":"e","seq":' + seq + b"}",
        st.sampled_from([b"NaN", b"Infinity", b"1e400", b"1e308", b"-1", b"0", b'"4"', b"true"])
        | st.integers().map(lambda n: str(n).encode()),
    )
)
def test_an_ack_is_read_or_refused_as_malformed(payload: bytes) -> None:
    try:
        stream, epoch, seq = _read_ack(payload)
    except MalformedMessageError:
        return
    assert (stream, epoch) == ("stock", "e")
    assert type(seq) is int
    assert 1 <= seq < 2**63
