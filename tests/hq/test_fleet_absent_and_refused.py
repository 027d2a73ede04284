"""The fleet push's sans-IO core on two gaps: a refusal the store only reports in its
``up/sync`` (``last_refused``: no new alert while one is active), and targets that never
connected (no retained state once the retained burst is over)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.hq.fleet import EXIT_NOT_APPLIED, EXIT_REFUSED, FleetPush, Outcome

STARTED = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
ROOT = "retail/v1/"


def sync(store: str, have: int, last_refused: object = None) -> tuple[str, bytes]:
    payload: dict[str, Any] = {
        "v": 1,
        "type": "sync",
        "store": store,
        "have_version": have,
        "held_versions": [],
        "sent_at": "2026-11-23T09:00:02.000+00:00",
    }
    if last_refused is not None:
        payload["last_refused"] = last_refused
    return f"{ROOT}{store}/up/sync", json.dumps(payload).encode()


def refused(version: int | None, at: str = "2026-11-23T09:00:01.000+00:00") -> dict[str, Any]:
    return {"version": version, "reason": "downlink.signature: unknown key id 'hq-9'", "at": at}


def test_a_sync_naming_the_pushed_version_refused_makes_the_store_refused() -> None:
    push = FleetPush({"a": 3, "b": 3, "c": 3}, started_at=STARTED)
    assert push.receive(*sync("a", 2, refused(3)))
    assert push.receive(*sync("b", 2, refused(2)))  # an earlier batch: not this one
    assert push.receive(*sync("c", 2, refused(None)))  # unreadable version, during the push
    assert push.outcome("a") is Outcome.REFUSED
    assert push.outcome("b") is Outcome.BEHIND
    assert push.outcome("c") is Outcome.REFUSED
    summary = push.summary(elapsed_s=0, deadline_s=1)
    assert summary.exit_code == EXIT_REFUSED
    detail = {result.store: result.detail for result in summary.stores}
    assert "downlink.signature: unknown key id 'hq-9'" in detail["a"]
    assert "not received, or refused" in detail["b"]


def test_a_refusal_before_the_push_or_a_later_applied_version_is_not_a_refusal() -> None:
    push = FleetPush({"a": 3, "b": 3, "c": 3}, started_at=STARTED)
    push.receive(*sync("a", 2, refused(None, at="2026-11-22T09:00:00.000+00:00")))
    push.receive(*sync("b", 3, refused(3)))  # applied wins (a duplicate refused later)
    # v3 claimed a day before HQ took it: another store's batch replayed here, not this push.
    push.receive(*sync("c", 2, refused(3, at="2026-11-22T09:00:00.000+00:00")))
    assert push.outcome("a") is Outcome.BEHIND
    assert push.outcome("b") is Outcome.APPLIED
    assert push.outcome("c") is Outcome.BEHIND


@pytest.mark.parametrize(
    "last_refused",
    [
        "refused",
        {"version": 3, "at": "2026-11-23T09:00:01.000+00:00"},
        {"version": "3", "reason": "x", "at": "2026-11-23T09:00:01.000+00:00"},
        {"version": -1, "reason": "x", "at": "2026-11-23T09:00:01.000+00:00"},
        {"version": 3, "reason": "x", "at": "yesterday"},
        {"version": 3, "reason": "x", "at": "2026-11-23T09:00:01"},
    ],
)
def test_a_garbled_last_refused_is_counted_and_changes_nothing(last_refused: object) -> None:
    push = FleetPush({"a": 3}, started_at=STARTED)
    assert not push.receive(*sync("a", 2, last_refused))
    assert push.garbage == 1
    assert push.last_garbage is not None
    assert "up/sync" in push.last_garbage
    assert push.outcome("a") is Outcome.NO_ANSWER


def test_a_target_without_retained_state_once_they_all_came_never_connected() -> None:
    push = FleetPush({"a": 1, "ghost": 1}, started_at=STARTED)
    push.receive(f"{ROOT}a/state", b'{"online": true, "boot": 2}')
    push.receive(*sync("a", 1))
    assert push.outcome("ghost") is Outcome.NO_ANSWER
    assert not push.settled()  # the retained states may still be coming
    push.retained_over()
    assert push.outcome("ghost") is Outcome.NEVER_CONNECTED
    assert push.settled()
    assert not push.settled(wait_offline=True)
    summary = push.summary(elapsed_s=0, deadline_s=1)
    assert summary.exit_code == EXIT_NOT_APPLIED
    assert summary.counts["never connected"] == 1
    assert "never connected to this broker" in summary.stores[1].detail
    assert push.progress().counts == {Outcome.APPLIED: 1, Outcome.NEVER_CONNECTED: 1}
    # It connects after all: its birth makes it a store to wait for again.
    push.receive(f"{ROOT}ghost/state", b'{"online": true, "boot": 1}')
    assert push.outcome("ghost") is Outcome.BEHIND
    assert not push.settled()
