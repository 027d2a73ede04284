"""The generated "Message schemas" section of docs/protocol.md, from the wire models.

``python -m gateway.wire.schema_doc`` rewrites the section between the markers;
``--check`` exits 1 when it is stale (``make lint`` runs it, and a test fails when a model
changed without it). Every message and event type gets its JSON Schema and a documented
example; the examples are checked against their models by the tests.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, create_model

from gateway.wire.alerts import AlertRaised
from gateway.wire.envelope import EnvelopeModel
from gateway.wire.messages import (
    AckMessage,
    CommandReply,
    HealthSnapshot,
    SignedMessage,
    StateMessage,
    SyncRequest,
)
from gateway.wire.registry import EVENT_TYPES, EXAMPLE_HEADER, event_model, model_examples

__all__ = [
    "BEGIN_MARKER",
    "END_MARKER",
    "documented_examples",
    "main",
    "protocol_schemas_markdown",
    "replace_generated",
]

BEGIN_MARKER = "<!-- BEGIN GENERATED SCHEMAS (python -m gateway.wire.schema_doc) -->"
END_MARKER = "<!-- END GENERATED SCHEMAS -->"

_DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


_ENVELOPE_EXAMPLE: dict[str, Any] = {
    "v": 1,
    "type": "events",
    "store": "store-0042",
    "stream": "alerts",
    "epoch": "9f2c4e1a7b3d5c60",
    "boot": 12,
    "seq_from": 43,
    "seq_to": 43,
    "sent_at": "2026-11-23T09:00:01.250+00:00",
    "events": [
        {**EXAMPLE_HEADER, "type": "alert.raised", **model_examples(AlertRaised)[0]},
    ],
}


_DOWNLINK_EXAMPLES: dict[str, dict[str, Any]] = {
    "signed": {
        "v": 1,
        "kid": "hq-2026-11",
        "payload": "eyJ2IjoxLCJ0eXBlIjoicHJpY2VzIiwgIi4uLiI6ICIuLi4ifQ==",
        "sig": "q0vN2m0XnFhR9Jm3o6d2Zr1yM4QJ9o1V2m5bW1b0G3c1n3v6Jb2m0bE6mXv1c9n4"
        "p2d8c4f5g6h7j8k9l0m1n2==",
    },
    "prices": {
        "v": 1,
        "type": "prices",
        "scope": {"stores": ["store-0042"], "groups": []},
        "version": 42,
        "kind": "delta",
        "part": 1,
        "parts": 1,
        "issued_at": "2026-11-23T09:00:00.000+00:00",
        "valid_until": "2026-11-24T09:00:00.000+00:00",
        "items": [
            {
                "sku": "4006381333931",
                "price": "1.99",
                "currency": "EUR",
                "unit_price": "7.96",
                "unit": "kg",
                "name": "Butter 250 g",
                "reference_price": "2.49",
            }
        ],
        "delete": ["4006381333948"],
        "promotions": [
            {
                "id": "flash-7",
                "sku": "4006381333931",
                "price": "0.99",
                "currency": "EUR",
                "reference_price": "1.99",
                "effective_from": "2026-11-23T17:00:00+01:00",
                "effective_to": "2026-11-23T19:00:00+01:00",
            }
        ],
        "cancel_promotions": ["flash-3"],
    },
    "command": {
        "v": 1,
        "type": "command",
        "id": "c-7f3a9e",
        "name": "ping",
        "args": {},
        "scope": {"stores": ["store-0042"]},
        "issued_at": "2026-11-23T09:00:00.000+00:00",
        "valid_until": "2026-11-23T09:05:00.000+00:00",
    },
    "reply": {
        "v": 1,
        "type": "reply",
        "id": "c-7f3a9e",
        "name": "ping",
        "ok": True,
        "result": {"pong": True, "store": "store-0042", "price_version": 42},
    },
    "sync": {
        "v": 1,
        "type": "sync",
        "store": "store-0042",
        "have_version": 41,
        "held_versions": [43],
        "sent_at": "2026-11-23T09:00:01.250+00:00",
        "last_refused": {
            "version": 42,
            "reason": "downlink.signature: signature does not verify with key 'hq-1'",
            "at": "2026-11-23T08:59:58.100+00:00",
        },
    },
}


def _price_batch_model() -> type[BaseModel]:
    """The price batch payload with its items and promotions spelled out (the store
    validates those one by one, to report every bad item)."""
    from gateway.prices.batch import PriceBatchHeader, PriceItem, Promotion

    return create_model(
        "PriceBatch",
        __base__=PriceBatchHeader,
        __doc__="`down/prices` payload: a full or delta price batch (one part of it).",
        items=(list[PriceItem], Field(default_factory=list)),
        promotions=(list[Promotion], Field(default_factory=list)),
    )


def documented_examples() -> list[tuple[str, type[BaseModel], dict[str, Any]]]:
    """(name, model, example) for every message and event type in the docs."""
    found: list[tuple[str, type[BaseModel], dict[str, Any]]] = [
        ("`state` — birth and death", StateMessage, model_examples(StateMessage)[0]),
        ("`up/{stream}` — event envelope", EnvelopeModel, _ENVELOPE_EXAMPLE),
    ]
    for name in EVENT_TYPES:
        model = event_model(name)
        found.append((f"Event `{name}`", model, model_examples(model)[0]))
    found.append(("`down/ack` — custody watermark", AckMessage, model_examples(AckMessage)[0]))
    found.append(("`up/health` — snapshot", HealthSnapshot, model_examples(HealthSnapshot)[0]))
    from gateway.sync.commands import CommandRequest

    found += [
        ("Signed downlink wrapper", SignedMessage, _DOWNLINK_EXAMPLES["signed"]),
        ("`down/prices` — price batch payload", _price_batch_model(), _DOWNLINK_EXAMPLES["prices"]),
        ("`up/sync` — resync request", SyncRequest, _DOWNLINK_EXAMPLES["sync"]),
        ("`down/cmd/{name}` — command payload", CommandRequest, _DOWNLINK_EXAMPLES["command"]),
        ("Command reply", CommandReply, _DOWNLINK_EXAMPLES["reply"]),
    ]
    return found


def _pretty(value: Any, indent: int = 0, column: int = 0) -> str:
    """JSON indented by two, keeping on one line any array or object that fits in 100
    columns (``column``: where the value starts, ``indent``: its line's indentation)."""
    flat = json.dumps(value, ensure_ascii=False)
    if not isinstance(value, dict | list) or not value or column + len(flat) <= 100:
        return flat
    inner = " " * (indent + 2)
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            prefix = f"{inner}{json.dumps(key, ensure_ascii=False)}: "
            lines.append(prefix + _pretty(item, indent + 2, len(prefix)))
        opening, closing = "{", "}"
    else:
        lines = [inner + _pretty(item, indent + 2, len(inner)) for item in value]
        opening, closing = "[", "]"
    return opening + "\n" + ",\n".join(lines) + "\n" + " " * indent + closing


def _tidy(schema: Any) -> Any:
    """Docstrings' line breaks out of the descriptions (the models keep them)."""
    if isinstance(schema, dict):
        return {
            key: " ".join(item.split())
            if key == "description" and isinstance(item, str)
            else _tidy(item)
            for key, item in schema.items()
        }
    if isinstance(schema, list):
        return [_tidy(item) for item in schema]
    return schema


def _json_block(value: Any) -> str:
    return "```json\n" + _pretty(value) + "\n```"


def _section(title: str, model: type[BaseModel], example: dict[str, Any]) -> str:
    schema = _tidy(model.model_json_schema())
    schema.pop("examples", None)  # shown below, in the order fields are written
    summary = " ".join((model.__doc__ or "").split("\n\n")[0].split())
    return "\n\n".join(
        (f"### {title}", summary, _json_block(schema), "Example:", _json_block(example))
    )


def protocol_schemas_markdown() -> str:
    """The generated section of docs/protocol.md (without its marker lines)."""
    parts = [
        "## Message schemas",
        (
            "Generated from the pydantic models in `gateway/wire/` by "
            "`python -m gateway.wire.schema_doc`: edit the models, never this section. Each event "
            "type's schema covers the whole event, its header fields first."
        ),
    ]
    parts.extend(_section(*entry) for entry in documented_examples())
    return "\n\n".join(parts) + "\n"


def replace_generated(document: str, generated: str) -> str:
    """``document`` with the text between the markers replaced by ``generated``."""
    start = document.find(BEGIN_MARKER)
    end = document.find(END_MARKER)
    if start < 0 or end < start:
        raise ValueError(f"markers not found: {BEGIN_MARKER!r} ... {END_MARKER!r}")
    head = document[: start + len(BEGIN_MARKER)]
    return head + "\n\n" + generated + "\n" + document[end:]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.wire.schema_doc",
        description="Rewrite the generated schema section of docs/protocol.md.",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if the section is stale")
    parser.add_argument("--doc", type=Path, default=_DOC_PATH, help="default: %(default)s")
    args = parser.parse_args(argv)
    document = args.doc.read_text(encoding="utf-8")
    updated = replace_generated(document, protocol_schemas_markdown())
    if updated == document:
        return 0
    if args.check:
        print(
            f"{args.doc}: generated schemas are stale; run python -m gateway.wire.schema_doc",
            file=sys.stderr,
        )
        return 1
    args.doc.write_text(updated, encoding="utf-8")
    print(f"{args.doc}: generated schemas rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
