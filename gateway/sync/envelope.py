"""The uplink envelope: many outbox events of one stream packed into one MQTT message.

``{v, type, store, stream, epoch, boot, seq_from, seq_to, sent_at, events: [...]}`` where each
event keeps its own ``seq``, ``id``, ``ts`` and ``type``. Packing splices the stored JSON text
of each event instead of re-parsing it: the backlog after an outage is large and the box small.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from gateway.clock import isoformat_utc
from gateway.store.outbox import OutboxEvent, WireBatch

__all__ = ["ENVELOPE_VERSION", "pack_envelope", "pack_wire_batch"]

ENVELOPE_VERSION = 1


def _event_json(event: OutboxEvent) -> str:
    head = (
        f'{{"seq":{event.seq},"id":{json.dumps(event.id)},"ts":{json.dumps(event.ts)},'
        f'"type":{json.dumps(event.type)}'
    )
    body = event.body.strip()
    if body == "{}":
        return head + "}"
    return head + "," + body[1:]


def pack_envelope(
    *,
    store: str,
    stream: str,
    epoch: str,
    boot: int,
    events: Sequence[OutboxEvent],
    sent_at: datetime,
) -> bytes:
    """Serialise ``events`` (consecutive seqs of one stream, at least one) as one envelope."""
    if not events:
        raise ValueError("an envelope carries at least one event")
    return pack_wire_batch(
        store=store,
        epoch=epoch,
        boot=boot,
        batch=WireBatch(
            stream, events[0].seq, events[-1].seq, len(events), ",".join(map(_event_json, events))
        ),
        sent_at=sent_at,
    )


def pack_wire_batch(
    *, store: str, epoch: str, boot: int, batch: WireBatch, sent_at: datetime
) -> bytes:
    """One envelope around a batch whose events are already wire JSON (the uplink's path)."""
    header = json.dumps(
        {
            "v": ENVELOPE_VERSION,
            "type": "events",
            "store": store,
            "stream": batch.stream,
            "epoch": epoch,
            "boot": boot,
            "seq_from": batch.seq_from,
            "seq_to": batch.seq_to,
            "sent_at": isoformat_utc(sent_at),
        },
        separators=(",", ":"),
    )
    return (header[:-1] + ',"events":[' + batch.events_json + "]}").encode()
