"""docs/protocol.md's generated JSON Schemas as a checker of what the gateway sends.

The schemas are read from the document HQ codes against, not from the models, and applied
with a JSON Schema validator (not pydantic): an event passes only if the documentation
describes it.
"""

from __future__ import annotations

import functools
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from gateway.store.outbox import Outbox
from gateway.wire import pack_wire_batch
from gateway.wire.schema_doc import BEGIN_MARKER, END_MARKER

__all__ = ["PROTOCOL_DOC", "documented_schemas", "event_validators", "sent_events", "validator"]

PROTOCOL_DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
_EVENT_TITLE = re.compile(r"^Event `(.+)`$")


@functools.cache
def documented_schemas() -> dict[str, dict[str, Any]]:
    """Section title -> the JSON Schema it documents, from the generated block."""
    text = PROTOCOL_DOC.read_text(encoding="utf-8")
    block = text[text.index(BEGIN_MARKER) : text.index(END_MARKER)]
    schemas: dict[str, dict[str, Any]] = {}
    for section in block.split("\n### ")[1:]:
        title, _, body = section.partition("\n")
        start = body.index("```json\n") + len("```json\n")
        schemas[title.strip()] = json.loads(body[start : body.index("\n```", start)])
    return schemas


def validator(title: str) -> Draft202012Validator:
    schema = documented_schemas()[title]
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@functools.cache
def event_validators() -> dict[str, Draft202012Validator]:
    """Event type -> a validator of its documented schema."""
    found = {}
    for title in documented_schemas():
        match = _EVENT_TITLE.match(title)
        if match:
            found[match.group(1)] = validator(title)
    return found


async def sent_events(outbox: Outbox) -> list[dict[str, Any]]:
    """Every event buffered in ``outbox``, read and packed as the uplink sends it, each
    envelope and each event checked against docs/protocol.md (AssertionError naming the
    event otherwise); the events as HQ receives them."""
    envelope_schema = validator("`up/{stream}` — event envelope")
    events: list[dict[str, Any]] = []
    for stream in outbox.streams:
        after = 0
        while (
            batch := await outbox.read_wire(
                stream, after_seq=after, max_events=500, max_bytes=1 << 20
            )
        ) is not None:
            payload = pack_wire_batch(
                store="store-0042",
                epoch=outbox.epoch_of(stream),
                boot=1,
                batch=batch,
                sent_at=datetime(2026, 11, 23, 9, tzinfo=UTC),
            )
            envelope = json.loads(payload)
            _check(envelope_schema, envelope, f"envelope of {stream}")
            for event in envelope["events"]:
                checker = event_validators().get(event["type"])
                assert checker is not None, f"{event['type']} is not in docs/protocol.md: {event}"
                _check(checker, event, f"{stream} event")
                events.append(event)
            after = batch.seq_to
    return events


def _check(checker: Draft202012Validator, value: Any, what: str) -> None:
    errors = sorted(checker.iter_errors(value), key=lambda error: list(error.path))
    assert not errors, f"{what} not as documented: {errors[0].message} at {list(errors[0].path)}"
