"""The wire contract's models: their documented examples, real envelopes, garbage."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import BaseModel, ValidationError

from gateway.alerts import Alerts, Severity
from gateway.clock import FakeClock
from gateway.drivers.contracts import DeviceFamily
from gateway.drivers.supervisor import DriverHealth
from gateway.hq import consumer
from gateway.hq.consumer import HQ_MIGRATIONS, HqConsumer
from gateway.store import Database
from gateway.store.budget import Shed
from gateway.store.outbox import Outbox
from gateway.wire import (
    EVENT_TYPES,
    EXPIRED_TYPE,
    AckMessage,
    AlertRaised,
    BufferReport,
    DriverReport,
    EnvelopeModel,
    HealthSnapshot,
    HealthStream,
    LastHqAck,
    LinkReport,
    OutboxEvent,
    event_model,
    pack_envelope,
    validate_envelope,
    validate_event,
)
from gateway.wire.schema_doc import documented_examples
from tests.store.probes import PROBES, probe

EPOCH = "9f2c4e1a7b3d5c60"
SENT_AT = datetime(2026, 11, 23, 9, 0, 1, 250000, tzinfo=UTC)


# --- examples -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "example"),
    [(model, example) for _, model, example in documented_examples()],
    ids=[title for title, _, _ in documented_examples()],
)
def test_documented_examples_validate(model: type[BaseModel], example: dict[str, Any]) -> None:
    model.model_validate_json(json.dumps(example))  # as it travels: JSON text
    if model is EnvelopeModel:
        validate_envelope(json.dumps(example))
    elif example.get("type") in EVENT_TYPES:
        validate_event(example)


def _health_parts() -> list[tuple[type[BaseModel], dict[str, Any]]]:
    [(_, _, health)] = [e for e in documented_examples() if e[1] is HealthSnapshot]
    return [
        (HealthSnapshot, health),
        (HealthStream, health["streams"][0]),
        (BufferReport, health["buffer"]),
        (LastHqAck, health["last_hq_ack"]),
        (DriverReport, health["drivers"][0]),
        (LinkReport, health["link"]),
    ]


def test_field_examples_validate_in_place() -> None:
    """Each field's own examples, put into its model's example, still validate."""
    checked = 0
    cases = [(model, example) for _, model, example in documented_examples()]
    for model, example in cases + _health_parts():
        for name, field in model.model_fields.items():
            for value in field.examples or ():
                model.model_validate({**example, name: value})
                checked += 1
    assert checked > 30


def test_the_examples_match_the_body_models() -> None:
    for name, body in EVENT_TYPES.items():
        [(_, _, example)] = [e for e in documented_examples() if e[0] == f"Event `{name}`"]
        own = {k: v for k, v in example.items() if k not in {"seq", "id", "ts", "type"}}
        body.model_validate(own)  # the body model alone takes the event's own fields


# --- the gateway's real output ------------------------------------------------------------------


async def _alert_events(tmp_path: Path, *, synchronized: bool) -> list[OutboxEvent]:
    """The ``alerts`` stream as the real Alerts and Outbox write it."""
    clock = FakeClock(synchronized=synchronized)
    async with Database.running(tmp_path / "g.db", clock=clock) as db:
        outbox = Outbox(db, clock, events=PROBES)
        await outbox.open(("alerts",))
        alerts = Alerts(db, outbox, clock)
        await alerts.load()
        await alerts.raise_("stock.low:slot-12", Severity.WARNING, "3 left", {"left": 3})
        clock.advance(61.5)
        await alerts.raise_("stock.low:slot-12", Severity.CRITICAL, "empty", {"left": 0})
        await alerts.raise_("uplink.refused:receipts", Severity.CRITICAL, "0x87")
        clock.advance(0.25)
        await alerts.clear("stock.low:slot-12", "restocked")
        await alerts.clear("uplink.refused:receipts")  # no clear message
        return await outbox.read("alerts", after_seq=0, max_events=100, max_bytes=1 << 20)


@pytest.mark.parametrize("synchronized", [True, False])
async def test_real_alert_changes_packed_in_a_real_envelope_validate(
    tmp_path: Path, synchronized: bool
) -> None:
    events = await _alert_events(tmp_path, synchronized=synchronized)
    assert [e.type for e in events] == ["alert.raised"] * 3 + ["alert.cleared"] * 2
    payload = pack_envelope(
        store="store-0042", stream="alerts", epoch=EPOCH, boot=3, events=events, sent_at=SENT_AT
    )
    envelope = validate_envelope(payload)
    assert (envelope.seq_from, envelope.seq_to) == (1, 5)
    checked = [validate_event(e.wire()) for e in events]
    assert [event.seq for event in checked] == [1, 2, 3, 4, 5]
    assert all(event.unsynced is not synchronized for event in checked)
    cleared = checked[3].model_dump()
    assert cleared["clear_message"] == "restocked"
    assert cleared["cleared_at"] == "2026-11-23T09:01:01.750+00:00"
    assert checked[4].model_dump()["clear_message"] == ""  # absent on the wire
    assert "clear_message" not in json.loads(events[4].body)
    # The reference consumer takes the same bytes (its lenient model is the same envelope).
    assert EnvelopeModel.model_validate_json(payload).events[0]["type"] == "alert.raised"


async def test_real_expiry_marker_validates_and_its_ack_too(tmp_path: Path) -> None:
    clock = FakeClock()
    async with Database.running(tmp_path / "g.db", clock=clock) as db:
        outbox = Outbox(db, clock, events=PROBES)
        await outbox.open(("stock",))
        for n in range(4):
            await outbox.append("stock", probe("stock.changed", {"n": n}))
            clock.advance(1.0)
        clock.advance(3600)
        await outbox.append("stock", probe("stock.changed", {"n": 4}))
        assert await outbox.expire("stock", ttl_s=600) == 4
        events = await outbox.read("stock", after_seq=0, max_events=10, max_bytes=1 << 20)
    marker = events[0]
    assert marker.type == EXPIRED_TYPE
    checked = validate_event(marker.wire())
    body = checked.model_dump()
    assert (body["from_seq"], body["count"], checked.seq) == (1, 4, 4)
    assert body["oldest_ts"] == "2026-11-23T09:00:00.000+00:00"
    assert body["newest_ts"] == checked.ts == "2026-11-23T09:00:03.000+00:00"
    # Only the marker: the stock.changed type has no model yet (it comes with its feature).
    payload = pack_envelope(
        store="s1", stream="stock", epoch=EPOCH, boot=1, events=[marker], sent_at=SENT_AT
    )
    validate_envelope(payload)
    # HQ's answer to it is a valid down/ack that covers every expired seq.
    async with Database.running(tmp_path / "hq.db", clock=clock, migrations=HQ_MIGRATIONS) as hq_db:
        hq = HqConsumer(hq_db, now=lambda: "now")
        await hq.load()
        ack = await hq.receive(payload)
    assert ack is not None
    assert ack.topic == "retail/v1/s1/down/ack"
    assert AckMessage.model_validate_json(ack.payload).seq == 4


# --- garbage --------------------------------------------------------------------------------------


def _valid() -> dict[str, Any]:
    [(_, _, envelope)] = [e for e in documented_examples() if e[1] is EnvelopeModel]
    return json.loads(json.dumps(envelope))


def _expired_event(**changes: Any) -> dict[str, Any]:
    [(_, _, event)] = [e for e in documented_examples() if e[0] == "Event `outbox.expired`"]
    return {**event, **changes}


def _mutated(change: str) -> bytes:
    envelope = _valid()
    event = envelope["events"][0]
    if change == "float seq":
        event["seq"] = 43.5
    elif change == "integral float seq":
        event["seq"] = 43.0
    elif change == "missing id":
        del event["id"]
    elif change == "unknown severity":
        event["severity"] = "apocalyptic"
    elif change == "count 0":
        envelope["events"] = [_expired_event(count=0)]
    elif change == "from_seq beyond seq":
        envelope["events"] = [_expired_event(from_seq=44)]
    elif change == "unknown event type":
        event["type"] = "stock.teleported"
    elif change == "unsynced false":
        event["unsynced"] = False
    elif change == "local time":
        event["ts"] = "2026-11-23T10:00:00.120+01:00"
    elif change == "seq_to mismatch":
        envelope["seq_to"] = 44
    elif change == "extra envelope field":
        envelope["priority"] = "high"
    elif change == "extra event field":
        event["colour"] = "red"
    elif change == "empty events":
        envelope["events"] = []
    else:
        raise AssertionError(change)
    return json.dumps(envelope).encode()


@pytest.mark.parametrize(
    ("change", "where", "says"),
    [
        ("float seq", "events.0.alert.raised.seq", "valid integer"),
        ("integral float seq", "events.0.alert.raised.seq", "valid integer"),
        ("missing id", "events.0.alert.raised.id", "Field required"),
        ("unknown severity", "events.0.alert.raised.severity", "'info', 'warning' or 'critical'"),
        ("count 0", "events.0.outbox.expired.count", "greater than or equal to 1"),
        ("from_seq beyond seq", "events.0.outbox.expired", "beyond the marker's own seq"),
        ("unknown event type", "events.0", "does not match any of the expected tags"),
        ("unsynced false", "events.0.alert.raised.unsynced", "only ever true"),
        ("local time", "events.0.alert.raised.ts", "should match pattern"),
        ("seq_to mismatch", "", "seq_to 44 is not the last event's seq 43"),
        ("extra envelope field", "priority", "Extra inputs are not permitted"),
        ("extra event field", "events.0.alert.raised.colour", "Extra inputs are not permitted"),
        ("empty events", "events", "at least 1 item"),
    ],
)
def test_garbage_is_refused_with_a_clear_error(change: str, where: str, says: str) -> None:
    with pytest.raises(ValidationError) as refused:
        validate_envelope(_mutated(change))
    errors = refused.value.errors(include_url=False)
    assert any(
        ".".join(map(str, error["loc"])) == where and says in error["msg"] for error in errors
    ), errors


@pytest.mark.parametrize("payload", [b"", b"not json", b'{"v": 1,', b"[]", "é".encode("latin-1")])
def test_non_json_is_refused(payload: bytes) -> None:
    with pytest.raises(ValidationError, match=r"json_invalid|model_type"):
        validate_envelope(payload)
    with pytest.raises(ValidationError):
        EnvelopeModel.model_validate_json(payload)


@pytest.mark.parametrize(
    ("change", "accepted"),
    [
        ("float seq", False),
        ("missing id", False),
        ("extra envelope field", False),
        ("empty events", False),
        # Lenient on the rest of an event, on purpose: HQ stores what it does not know yet.
        ("unknown severity", True),
        ("unknown event type", True),
        ("extra event field", True),
        ("count 0", True),
    ],
)
def test_the_reference_consumer_checks_headers_only(change: str, accepted: bool) -> None:
    # The consumer reads events for their headers only: the same checks, one envelope model.
    assert issubclass(consumer.EnvelopeHeaders, EnvelopeModel)
    payload = _mutated(change)
    for model in (EnvelopeModel, consumer.EnvelopeHeaders):
        if accepted:
            model.model_validate_json(payload)
        else:
            with pytest.raises(ValidationError):
                model.model_validate_json(payload)


@pytest.mark.parametrize("payload", [b"", b"not json", b'{"v": 1,', b"[]", "é".encode("latin-1")])
def test_the_consumer_refuses_what_the_envelope_model_refuses(payload: bytes) -> None:
    with pytest.raises(ValidationError):
        consumer.EnvelopeHeaders.model_validate_json(payload)


def test_headers_only_still_checks_that_the_rest_of_each_event_is_json() -> None:
    payload = (
        json.dumps(_valid())
        .encode()
        .replace(b'"type": "alert.raised"', b'"type": "alert.raised", "x": [1,')
    )
    with pytest.raises(ValidationError):
        consumer.EnvelopeHeaders.model_validate_json(payload)
    headers = consumer.EnvelopeHeaders.model_validate_json(json.dumps(_valid()).encode())
    assert set(headers.events[0]) == {"seq", "id", "ts", "type"}


def test_event_validation_is_strict_about_header_types() -> None:
    event = {**_valid()["events"][0], "seq": "43"}
    with pytest.raises(ValidationError, match="valid integer"):
        validate_event(event)
    with pytest.raises(KeyError):
        event_model("stock.teleported")


# --- the models follow the code's own enumerations ----------------------------------------------


def test_literals_follow_the_enums_they_mirror() -> None:
    severities = get_args(AlertRaised.model_fields["severity"].annotation)
    assert set(severities) == {s.value for s in Severity}
    assert set(get_args(DriverReport.model_fields["family"].annotation)) == {
        f.value for f in DeviceFamily
    }
    assert set(get_args(DriverReport.model_fields["health"].annotation)) == {
        h.value for h in DriverHealth
    }
    [paused] = get_args(BufferReport.model_fields["paused"].annotation)
    assert set(get_args(paused)) == {s.label for s in Shed if s <= Shed.AGGREGATE}
    assert EXPIRED_TYPE in EVENT_TYPES
