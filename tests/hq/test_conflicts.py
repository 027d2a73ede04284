"""The reference HQ consumer flags a seq it holds arriving again with another event id."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from tests.hq.support import envelope, expired_marker, open_consumer, with_events


def renamed(payload: bytes, prefix: str) -> bytes:
    """The same envelope, its events with other ids (a store that went back in time)."""
    data = json.loads(payload)
    for event in data["events"]:
        event["id"] = f"{prefix}{event['seq']}"
    return json.dumps(data).encode()


async def test_same_seq_with_another_id_is_a_conflict_not_a_duplicate(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out: list[dict[str, Any]] = []
    cm, consumer = await open_consumer(tmp_path / "hq.db", out)
    try:
        await consumer.receive(envelope([1, 2, 3, 4]))
        await consumer.receive(envelope([3, 4]))  # a plain re-send: no conflict
        assert consumer.conflicts == {}
        with caplog.at_level(logging.WARNING, logger="gateway.hq.consumer"):
            ack = await consumer.receive(renamed(envelope([3, 4, 5]), "other"))
        assert ack is not None
        assert json.loads(ack.payload)["seq"] == 5  # seq 5 is new, stored
        assert consumer.conflicts == {("s1", "stock", "e1"): {3, 4}}
        [line] = [r.getMessage() for r in caplog.records]
        assert "conflict in s1/stock epoch e1: 2 event(s)" in line
        assert "seq 3..4" in line
        assert [event["id"] for event in out] == ["id1", "id2", "id3", "id4", "other5"]

        # The same conflicting envelope again: counted once, logged once.
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="gateway.hq.consumer"):
            await consumer.receive(renamed(envelope([3, 4, 5]), "other"))
        assert consumer.conflicts == {("s1", "stock", "e1"): {3, 4}}
        assert caplog.records == []
        # Another epoch is another key: the same seqs are simply new there.
        await consumer.receive(renamed(envelope([1, 2], epoch="e2"), "other"))
        assert ("s1", "stock", "e2") not in consumer.conflicts
    finally:
        await cm.__aexit__(None, None, None)


async def test_conflicts_within_one_commit_are_found(tmp_path: Path) -> None:
    out: list[dict[str, Any]] = []
    cm, consumer = await open_consumer(tmp_path / "hq.db", out)
    try:
        await consumer.receive_many([envelope([1, 2]), renamed(envelope([1, 2, 3]), "x")])
        assert consumer.conflicts == {("s1", "stock", "e1"): {1, 2}}
        assert [event["id"] for event in out] == ["id1", "id2", "x3"]
    finally:
        await cm.__aexit__(None, None, None)


async def test_an_expiry_marker_on_a_seq_hq_holds_is_no_conflict(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """protocol.md: the store's TTL may expire events HQ already holds (its acks did not get
    through); the marker takes the last expired seq, and "any of them it already stored stay
    valid". A marker with a seq HQ holds under the event's own id is that, not a store that
    went back in time."""
    out: list[dict[str, Any]] = []
    cm, consumer = await open_consumer(tmp_path / "hq.db", out)
    try:
        await consumer.receive(envelope([1, 2, 3, 4]))
        with caplog.at_level(logging.WARNING, logger="gateway.hq.consumer"):
            marker = with_events(envelope([4]), [expired_marker(4, 2, 3)])
            ack = await consumer.receive(marker)
        assert ack is not None
        assert json.loads(ack.payload)["seq"] == 4
        assert consumer.conflicts == {}
        assert not [r for r in caplog.records if "conflict" in r.getMessage()]
    finally:
        await cm.__aexit__(None, None, None)
