"""The fleet push's sans-IO core (gateway/hq/fleet.py): stores classified from what they send."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.hq.fleet import (
    EXIT_ALL_APPLIED,
    EXIT_NOT_APPLIED,
    EXIT_REFUSED,
    FleetPush,
    Outcome,
)
from gateway.hq.fleet_view import ProgressView, render_summary

STARTED = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
ROOT = "retail/v1/"


def tracker(**versions: int) -> FleetPush:
    return FleetPush(versions, started_at=STARTED)


def envelope(store: str, stream: str, events: list[dict[str, Any]]) -> bytes:
    return json.dumps(
        {
            "v": 1,
            "type": "events",
            "store": store,
            "stream": stream,
            "epoch": "e1",
            "boot": 3,
            "seq_from": 1,
            "seq_to": len(events),
            "sent_at": "2026-11-23T09:00:01.000+00:00",
            "events": [{"seq": n, "id": f"i{n}", **e} for n, e in enumerate(events, 1)],
        }
    ).encode()


def receipt(store: str, event_type: str, version: int, **fields: Any) -> tuple[str, bytes]:
    event = {
        "type": event_type,
        "ts": "2026-11-23T09:00:01.000+00:00",
        "version": version,
        **fields,
    }
    return f"{ROOT}{store}/up/receipts", envelope(store, "receipts", [event])


def state(store: str, *, online: bool, boot: int) -> tuple[str, bytes]:
    return f"{ROOT}{store}/state", json.dumps({"online": online, "boot": boot}).encode()


def sync(store: str, have: int, held: list[int] | None = None) -> tuple[str, bytes]:
    payload = {
        "v": 1,
        "type": "sync",
        "store": store,
        "have_version": have,
        "held_versions": held or [],
        "sent_at": "2026-11-23T09:00:02.000+00:00",
    }
    return f"{ROOT}{store}/up/sync", json.dumps(payload).encode()


def refusal_alert(
    store: str, *, updated_at: datetime, key: str = "downlink.signature"
) -> tuple[str, bytes]:
    stamp = updated_at.isoformat(timespec="milliseconds")
    details: dict[str, Any] = {"refused": 1, "last_reason": "unknown key id 'hq-9'"}
    if key == "downlink.malformed":
        details["by_topic"] = {"down/prices": 1}
    event = {
        "type": "alert.raised",
        "ts": stamp,
        "key": key,
        "severity": "critical",
        "message": "a message on down/prices was refused",
        "raised_at": stamp,
        "updated_at": stamp,
        "details": details,
    }
    return f"{ROOT}{store}/up/alerts", envelope(store, "alerts", [event])


def test_every_outcome_from_receipts_state_and_sync() -> None:
    push = tracker(a=3, b=5, c=2, d=7, e=1, f=4)
    for store in "abcdef":
        push.part_sent(store, 1)
    push.receive(*state("a", online=True, boot=2))
    push.receive(*receipt("a", "price.stored", 3, kind="full", parts=1))
    assert push.outcome("a") is Outcome.BEHIND
    push.receive(*receipt("a", "price.applied", 3, kind="full", parts=1))
    push.receive(
        *receipt(
            "b",
            "price.rejected",
            5,
            reason="invalid batch",
            problems=[{"item": "x1", "reason": "price: bad"}],
        )
    )
    push.receive(*state("c", online=True, boot=9))
    push.receive(*sync("c", 1, [3]))  # has v1, holds v3: v2 is missing
    push.receive(*state("d", online=False, boot=4))
    push.send_failed("f", "not connected to the broker")
    summary = push.summary(elapsed_s=1.5, deadline_s=60)
    outcomes = {r.store: r.outcome for r in summary.stores}
    assert outcomes == {
        "a": Outcome.APPLIED,
        "b": Outcome.REFUSED,
        "c": Outcome.BEHIND,
        "d": Outcome.OFFLINE,
        "e": Outcome.NO_ANSWER,
        "f": Outcome.NOT_SENT,
    }
    details = {r.store: r.detail for r in summary.stores}
    assert "x1: price: bad" in details["b"]
    assert "has v1, holds [3]" in details["c"]
    assert summary.exit_code == EXIT_REFUSED
    assert summary.counts["applied"] == 1
    # The running counts (what the progress bar and settled() read) match a full recount.
    progress = push.progress()
    assert {o.value: progress.counts.get(o, 0) for o in Outcome} == summary.counts
    assert progress.sent == 6
    assert summary.as_dict()["stores"][0] == {
        "store": "a",
        "version": 3,
        "outcome": "applied",
        "detail": "v3 applied",
        "applied_version": 3,
    }


def test_a_later_version_applied_or_synced_counts_as_applied() -> None:
    push = tracker(a=3, b=3)
    push.receive(*receipt("a", "price.applied", 4, kind="delta", parts=1))
    push.receive(*sync("b", 3))
    assert push.outcome("a") is push.outcome("b") is Outcome.APPLIED
    assert push.summary(elapsed_s=0, deadline_s=1).exit_code == EXIT_ALL_APPLIED


def test_a_store_answering_sync_without_the_version_may_have_refused_it_silently() -> None:
    push = tracker(a=3, b=3)
    push.receive(*sync("a", 2))
    push.receive(*sync("b", 1, [3]))
    details = {r.store: r.detail for r in push.summary(elapsed_s=0, deadline_s=1).stores}
    assert "does not hold v3: not received, or refused" in details["a"]
    assert "does not hold" not in details["b"]  # it holds v3, waiting for v2
    assert "has v1, holds [3]" in details["b"]


def test_an_older_receipt_is_life_not_success_and_incomplete_parts_are_behind() -> None:
    push = tracker(a=3, b=3)
    push.receive(*receipt("a", "price.applied", 2, kind="delta", parts=1))
    push.receive(
        *receipt("b", "price.rejected", 3, reason="incomplete: got part(s) [1] of 2", problems=[])
    )
    assert push.outcome("a") is Outcome.BEHIND
    assert push.outcome("b") is Outcome.BEHIND
    assert "incomplete" in push.summary(elapsed_s=0, deadline_s=1).stores[1].detail
    assert push.summary(elapsed_s=0, deadline_s=1).exit_code == EXIT_NOT_APPLIED


def test_refusal_alerts_count_only_when_recent_and_about_prices() -> None:
    push = tracker(a=1, b=1, c=1, d=1)
    push.receive(*refusal_alert("a", updated_at=STARTED + timedelta(seconds=1)))
    push.receive(*refusal_alert("b", updated_at=STARTED - timedelta(days=2)))  # old episode
    push.receive(*refusal_alert("c", updated_at=STARTED, key="downlink.malformed"))
    _, malformed_cmd = refusal_alert("d", updated_at=STARTED, key="downlink.malformed")
    doc = json.loads(malformed_cmd)
    doc["events"][0]["details"]["by_topic"] = {"down/cmd/+": 1}
    push.receive(f"{ROOT}d/up/alerts", json.dumps(doc).encode())
    assert push.outcome("a") is Outcome.REFUSED
    assert "unknown key id" in push.summary(elapsed_s=0, deadline_s=1).stores[0].detail
    assert push.outcome("b") is Outcome.NO_ANSWER
    assert push.outcome("c") is Outcome.REFUSED
    assert push.outcome("d") is Outcome.NO_ANSWER
    # An applied receipt wins over a refusal (the refusal was about something else).
    push.receive(*receipt("a", "price.applied", 1, kind="full", parts=1))
    assert push.outcome("a") is Outcome.APPLIED


def test_state_follows_boots_and_ignores_stale_deaths() -> None:
    push = tracker(a=1)
    push.receive(*state("a", online=True, boot=5))
    push.receive(*state("a", online=False, boot=4))  # an earlier start's will
    assert push.outcome("a") is Outcome.BEHIND
    push.receive(*state("a", online=False, boot=5))
    assert push.outcome("a") is Outcome.OFFLINE
    push.receive(*state("a", online=True, boot=5))  # reconnected, same start
    assert push.outcome("a") is Outcome.BEHIND


def test_settled_waits_for_online_stores_and_optionally_for_offline_ones() -> None:
    push = tracker(a=1, b=1)
    push.receive(*receipt("a", "price.applied", 1, kind="full", parts=1))
    assert not push.settled()  # b: nothing known, it may still answer
    push.receive(*state("b", online=True, boot=1))
    assert not push.settled()
    push.receive(*state("b", online=False, boot=1))
    assert push.settled()
    assert not push.settled(wait_offline=True)


def test_progress_counts_parts_sent() -> None:
    push = tracker(a=1, b=1)
    push.part_sent("a", 2)
    assert push.progress().sent == 0
    push.part_sent("a", 2)
    push.part_sent("b", 1)
    progress = push.progress()
    assert (progress.total, progress.sent, progress.applied) == (2, 2, 0)


GARBAGE = [
    (f"{ROOT}a/state", b"\xff\xfe"),
    (f"{ROOT}a/state", b"[1, 2]"),
    (f"{ROOT}a/state", b'{"online": "yes", "boot": 1}'),
    (f"{ROOT}a/state", b'{"online": true, "boot": 1.5}'),
    (f"{ROOT}a/up/receipts", b"NaN"),
    (f"{ROOT}a/up/receipts", b'{"type": "events", "events": {"a": 1}}'),
    (f"{ROOT}a/up/receipts", b'{"type": "events", "events": [7]}'),
    (f"{ROOT}a/up/receipts", b'{"type": "events", "events": [{"type": "price.applied"}]}'),
    (
        f"{ROOT}a/up/receipts",
        b'{"type": "events", "events": [{"type": "price.applied", "version": true}]}',
    ),
    (
        f"{ROOT}a/up/receipts",
        b'{"type": "events", "events": [{"type": "price.applied", "version": "9"}]}',
    ),
    (
        f"{ROOT}a/up/receipts",
        b'{"type": "events", "events": [{"type": "price.rejected", "version": 1}]}',
    ),
    (f"{ROOT}a/up/sync", b'{"type": "sync", "have_version": -1}'),
    (f"{ROOT}a/up/sync", b'{"type": "sync", "have_version": 9, "held_versions": "x"}'),
    (f"{ROOT}a/up/sync", b'{"type": "nope", "have_version": 9}'),
    (
        f"{ROOT}a/up/alerts",
        b'{"type": "events", "events": [{"type": "alert.raised", "key": "downlink.signature"}]}',
    ),
    (
        f"{ROOT}a/up/alerts",
        (
            b'{"type": "events", "events": [{"type": "alert.raised", "key": "downlink.signature",'
            b' "details": {}, "updated_at": "yesterday"}]}'
        ),
    ),
    (
        f"{ROOT}a/up/alerts",
        (
            b'{"type": "events", "events": [{"type": "alert.raised", "key": "downlink.signature",'
            b' "details": {}, "updated_at": "2026-11-23T09:00:00"}]}'
        ),
    ),
    ("elsewhere/a/up/receipts", b"{}"),
    (ROOT, b"{}"),
]


@pytest.mark.parametrize(("topic", "payload"), GARBAGE)
def test_garbage_is_counted_and_changes_nothing(topic: str, payload: bytes) -> None:
    push = tracker(a=1)
    push.receive(*state("a", online=True, boot=1))
    assert push.receive(topic, payload) is False
    summary = push.summary(elapsed_s=0, deadline_s=1)
    assert summary.garbage == 1
    assert summary.last_garbage is not None
    assert summary.last_garbage.startswith(topic)
    assert push.outcome("a") is Outcome.BEHIND
    assert push.progress().counts == {Outcome.BEHIND: 1}


def test_a_receipt_naming_another_store_than_its_topic_is_garbage() -> None:
    """Store b publishing "a applied" on its own topic, or on a's (an ACL hole): ignored."""
    push = tracker(a=1, b=1)
    _, payload = receipt("a", "price.applied", 1, kind="full", parts=1)
    assert push.receive(f"{ROOT}b/up/receipts", payload) is False
    assert push.outcome("a") is push.outcome("b") is Outcome.NO_ANSWER
    assert "names store 'a'" in (push.summary(elapsed_s=0, deadline_s=1).last_garbage or "")


def test_other_stores_and_other_events_are_ignored_quietly() -> None:
    push = tracker(a=1)
    assert push.receive(*receipt("zz", "price.applied", 1, kind="full", parts=1)) is False
    label = {"type": "label.confirmed", "ts": "2026-11-23T09:00:01.000+00:00"}
    assert push.receive(f"{ROOT}a/up/receipts", envelope("a", "receipts", [label])) is False
    assert push.summary(elapsed_s=0, deadline_s=1).garbage == 0


def test_a_custom_topic_root() -> None:
    push = FleetPush({"a": 2}, started_at=STARTED, topic_root="chain/{store_id}/gw/")
    _, payload = receipt("a", "price.applied", 2, kind="full", parts=1)
    assert push.receive("chain/a/gw/up/receipts", payload)
    assert push.outcome("a") is Outcome.APPLIED
    assert push.receive("chain/a/up/receipts", payload) is False
    assert push.garbage == 1


def test_plain_progress_lines_and_the_summary_table_when_not_a_terminal() -> None:
    push = tracker(**{f"s{n:02d}": 1 for n in range(20)})
    out = io.StringIO()
    with ProgressView(out) as view:
        for n in range(20):
            push.part_sent(f"s{n:02d}", 1)
            view.update(push.progress())
        for n in range(19):
            push.receive(*receipt(f"s{n:02d}", "price.applied", 1, kind="full", parts=1))
            view.update(push.progress())
    lines = out.getvalue().splitlines()
    assert 2 <= len(lines) <= 12  # a line per tenth settled, not one per message
    assert lines[-1].startswith("sent 20/20 · applied 19 · refused 0")
    table = io.StringIO()
    render_summary(push.summary(elapsed_s=2.0, deadline_s=60), table, as_json=False)
    text = table.getvalue()
    assert "20 store(s) in 2.0 s (deadline 60 s): 19 applied, 1 no answer" in text
    assert "s19" in text
    assert "nothing heard from the store" in text
    as_json = io.StringIO()
    render_summary(push.summary(elapsed_s=2.0, deadline_s=60), as_json, as_json=True)
    assert json.loads(as_json.getvalue())["counts"]["no answer"] == 1
